"""Use cases of integrators (contract section 8): register, read, change and revoke the direct producers
of the events topic, and the signing secrets of the service.

An integrator has a public key id and a secret shown once at registration. The worker checks every
message's HMAC, so it must be able to recompute the secret: it is derived as HMAC(master, key_id + salt)
(see :mod:`trace_service.access.keys`), and only the salt is stored.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import keys
from trace_service.access import repository as repo
from trace_service.access.models import IntegratorIn, IntegratorPatch, Principal, Role
from trace_service.access.service import require
from trace_service.contract.codes import CodePatterns
from trace_service.errors import Conflict, InvalidInput, NotFound
from trace_service.settings import Settings


class SigningNotConfigured(RuntimeError):
    """Neither TRACE_SIGNING_SECRET nor TRACE_KEY_PEPPER is set: nothing can be signed or checked."""

    def __init__(self) -> None:
        super().__init__(
            "no signing secret: set TRACE_SIGNING_SECRET (or TRACE_KEY_PEPPER, from which one is derived); "
            "without it the mark of the API's messages could be forged (contract section 8)"
        )


def signing_master(settings: Settings) -> bytes | None:
    return keys.signing_master(settings.signing_secret.get_secret_value(), settings.key_pepper.get_secret_value())


def require_master(settings: Settings) -> bytes:
    master = signing_master(settings)
    if master is None:
        raise SigningNotConfigured
    return master


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "name": row["name"],
        "operators": list(row["operators"]),
        "status": "revoked" if row["revoked_at"] is not None else "active",
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "revoked_at": row["revoked_at"],
    }


async def _checked_operators(conn: AsyncConnection, codes: list[str], patterns: CodePatterns) -> list[str]:
    """The codes once each, in the order given; every one a registered operator, else 422 naming them."""
    unique = list(dict.fromkeys(codes))
    problems = [
        {"field": "operators", "index": i, "message": f"operator code must match {patterns.operator}"}
        for i, c in enumerate(unique)
        if not re.fullmatch(patterns.operator, c)
    ]
    if not problems:
        problems = [
            {"field": "operators", "message": f"unknown operator {c}"} for c in await repo.unregistered(conn, unique)
        ]
    if problems:
        raise InvalidInput("every operator of an integrator must be registered", details=problems[:100])
    return unique


async def register(
    conn: AsyncConnection, principal: Principal, body: IntegratorIn, settings: Settings
) -> dict[str, Any]:
    require(principal, Role.ADMIN)
    master = require_master(settings)
    operators = await _checked_operators(conn, body.operators, settings.codes)
    key_id = keys.new_integrator_id()  # "int-…": never the API's reserved key id
    salt = keys.new_salt()
    row = await repo.insert_integrator(
        conn,
        {"key_id": key_id, "name": body.name, "salt": salt, "operators": operators, "created_by": principal.key_id},
    )
    return {**_public(row), "secret": keys.integrator_secret(master, key_id, salt)}


async def read(conn: AsyncConnection, principal: Principal, key_id: str) -> dict[str, Any]:
    require(principal, Role.ADMIN, Role.REGULATOR)
    row = await repo.get_integrator(conn, key_id)
    if row is None:
        raise NotFound(f"no integrator {key_id}")
    return _public(row)


async def list_all(conn: AsyncConnection, principal: Principal) -> dict[str, Any]:
    require(principal, Role.ADMIN, Role.REGULATOR)
    return {"items": [_public(r) for r in await repo.list_integrators(conn)]}


async def change(
    conn: AsyncConnection, principal: Principal, key_id: str, body: IntegratorPatch, settings: Settings
) -> dict[str, Any]:
    require(principal, Role.ADMIN)
    values = body.model_dump(exclude_unset=True)
    if any(v is None for v in values.values()):
        raise InvalidInput("name and operators cannot be null")
    row = await repo.get_integrator(conn, key_id)
    if row is None:
        raise NotFound(f"no integrator {key_id}")
    if row["revoked_at"] is not None:
        raise Conflict(f"integrator {key_id} is revoked; register a new one")
    if "operators" in values:
        values["operators"] = await _checked_operators(conn, values["operators"], settings.codes)
    if values:
        row = await repo.update_integrator(conn, key_id, values) or row
    return _public(row)


async def revoke(conn: AsyncConnection, principal: Principal, key_id: str) -> None:
    require(principal, Role.ADMIN)
    if await repo.get_integrator(conn, key_id) is None:
        raise NotFound(f"no integrator {key_id}")
    await repo.revoke_integrator(conn, key_id)
