"""Use cases of access control: authenticate a bearer token, register operators, issue and revoke keys."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import keys, rules
from trace_service.access import repository as repo
from trace_service.access.models import (
    OperatorIn,
    OperatorPatch,
    OperatorStatus,
    Principal,
    Role,
)
from trace_service.access.scopes import parse_scopes
from trace_service.contract.codes import CodePatterns, is_real_region
from trace_service.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized

ADMIN_TOKEN_KEY_ID = "admin-token"  # noqa: S105 - the name of the bootstrap key, not a secret


async def authenticate(
    conn: AsyncConnection, authorization: str | None, *, admin_token: str | None, pepper: str
) -> Principal:
    if not authorization:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("use Authorization: Bearer <key>")
    if admin_token and keys.matches_token(token, admin_token):
        return Principal(role=Role.ADMIN, key_id=ADMIN_TOKEN_KEY_ID)
    parsed = keys.parse(token)
    if parsed is None:
        raise Unauthorized("the API key is not valid")
    key_id, secret = parsed
    row = await repo.key_for_auth(conn, key_id)
    if row is None or not keys.matches(secret, row["secret_hash"], pepper):
        raise Unauthorized("the API key is not valid")
    if row["operator_code"] is not None and row["operator_status"] != OperatorStatus.ACTIVE:
        raise Forbidden("the operator of this key is suspended", code="operator_suspended")
    return Principal(
        role=Role(row["role"]), key_id=key_id, operator=row["operator_code"], scopes=tuple(row["scopes"] or ())
    )


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        named = " or ".join(r.value for r in roles)
        raise Forbidden(f"this needs {'an' if named[0] in 'aeiou' else 'a'} {named} key")


async def reporting_scope(conn: AsyncConnection, principal: Principal) -> dict[str, str] | None:
    """Operator codes this principal may report for (code -> status); None means any (staff)."""
    if principal.is_staff:
        return None
    if principal.role == Role.DEPARTMENT:
        raise Forbidden("a department key only reads, within its scopes; it reports for no operator")
    if principal.operator is None:  # pragma: no cover - an operator key always has an operator
        raise Forbidden("this key is bound to no operator")
    return await repo.scope_of(conn, principal.operator)


async def check_can_see_operator(conn: AsyncConnection, principal: Principal, code: str) -> None:
    scope = await reporting_scope(conn, principal)
    if scope is not None and code not in scope:
        raise Forbidden("this operator is not yours")


async def register_operator(
    conn: AsyncConnection, principal: Principal, body: OperatorIn, patterns: CodePatterns
) -> dict[str, Any]:
    require(principal, Role.ADMIN, Role.REGULATOR)
    problems = []
    if not re.fullmatch(patterns.operator, body.code):
        problems.append({"field": "code", "message": f"operator code must match {patterns.operator}"})
    if not is_real_region(body.region):
        problems.append({"field": "region", "message": "region must be a 6-digit GB/T 2260 code of a real province"})
    if problems:
        raise InvalidInput("the operator is not valid", details=problems)
    if body.parent is not None:
        parent = await repo.get_operator(conn, body.parent)
        if parent is None:
            raise InvalidInput(
                "the parent operator is not registered",
                details=[{"field": "parent", "message": f"unknown operator {body.parent}"}],
            )
        problem = rules.parent_problem(body.kind, parent["kind"])
        if problem is not None:
            raise InvalidInput(
                f"{body.parent} is a {parent['kind']}: {problem}",
                details=[{"field": "parent", "message": problem}],
            )
    row = await repo.insert_operator(conn, body.model_dump(mode="json"))
    if row is None:
        raise Conflict(f"operator {body.code} is already registered")
    return row


async def read_operator(conn: AsyncConnection, principal: Principal, code: str) -> dict[str, Any]:
    row = await repo.get_operator(conn, code)
    if row is None:
        # An operator key must not learn which codes exist outside its own tree.
        if not principal.is_staff:
            raise Forbidden("this operator is not yours")
        raise NotFound(f"no operator {code}")
    await check_can_see_operator(conn, principal, code)
    return row


async def change_operator(
    conn: AsyncConnection, principal: Principal, code: str, body: OperatorPatch
) -> dict[str, Any]:
    require(principal, Role.ADMIN, Role.REGULATOR)
    values = body.model_dump(mode="json", exclude_unset=True)
    if any(v is None for k, v in values.items() if k != "credit_code"):
        raise InvalidInput("name, status and emergency_outlet cannot be null")
    row = await repo.update_operator(conn, code, values) if values else await repo.get_operator(conn, code)
    if row is None:
        raise NotFound(f"no operator {code}")
    return row


async def issue_operator_key(
    conn: AsyncConnection, principal: Principal, code: str, name: str | None, pepper: str
) -> dict[str, Any]:
    require(principal, Role.ADMIN, Role.REGULATOR)
    operator = await repo.get_operator(conn, code)
    if operator is None:
        raise NotFound(f"no operator {code}")
    return await _issue(conn, principal, Role.OPERATOR, code, name, pepper)


async def issue_staff_key(
    conn: AsyncConnection,
    principal: Principal,
    role: Role,
    name: str,
    pepper: str,
    scopes: Sequence[str] | None = None,
) -> dict[str, Any]:
    require(principal, Role.ADMIN)
    if role not in (Role.ADMIN, Role.REGULATOR, Role.DEPARTMENT):
        raise InvalidInput(
            "role must be regulator, admin or department; operator keys come from POST /v1/operators/{code}/keys",
            details=[{"field": "role", "message": "must be regulator, admin or department"}],
        )
    if role != Role.DEPARTMENT:
        if scopes is not None:
            raise InvalidInput(
                "only department keys have scopes", details=[{"field": "scopes", "message": "department keys only"}]
            )
        return await _issue(conn, principal, role, None, name, pepper)
    try:
        granted = parse_scopes(scopes or []).values()
    except ValueError as exc:
        raise InvalidInput(str(exc), details=[{"field": "scopes", "message": str(exc)}]) from None
    return await _issue(conn, principal, role, None, name, pepper, scopes=granted)


async def _issue(
    conn: AsyncConnection,
    principal: Principal,
    role: Role,
    operator: str | None,
    name: str | None,
    pepper: str,
    *,
    scopes: list[str] | None = None,
) -> dict[str, Any]:
    new = keys.generate()
    row = await repo.insert_key(
        conn,
        {
            "key_id": new.key_id,
            "secret_hash": keys.hash_secret(new.secret, pepper),
            "role": role.value,
            "operator_code": operator,
            "name": name,
            "created_by": principal.key_id,
            "scopes": scopes,
        },
    )
    return {
        "key_id": row["key_id"],
        "key": new.token,
        "role": role,
        "operator": operator,
        "name": name,
        "created_at": row["created_at"],
        "scopes": scopes,
    }


async def revoke_key(conn: AsyncConnection, principal: Principal, key_id: str) -> None:
    require(principal, Role.ADMIN, Role.REGULATOR)
    row = await repo.get_key(conn, key_id)
    if row is None:
        raise NotFound(f"no key {key_id}")
    if principal.role == Role.REGULATOR and row["role"] != Role.OPERATOR:
        raise Forbidden("regulators may revoke operator keys only")
    await repo.revoke_key(conn, key_id)
