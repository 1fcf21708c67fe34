"""SQL for operators, keys and integrators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.db.tables import ApiKey, Integrator, Operator

operators = Operator.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]
integrators = Integrator.__table__  # type: ignore[attr-defined]


async def _first(conn: AsyncConnection, stmt: sa.Executable) -> dict[str, Any] | None:
    """The statement's first row as a dict, or None when it has none."""
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


def _update(table: sa.Table, which: sa.ColumnElement[bool], values: dict[str, Any]) -> sa.Update:
    """Set ``values`` (and ``updated_at``) on the rows ``which`` picks, returning them."""
    return sa.update(table).where(which).values(**values, updated_at=sa.func.now()).returning(table)


async def get_operator(conn: AsyncConnection, code: str) -> dict[str, Any] | None:
    return await _first(conn, sa.select(operators).where(operators.c.code == code))


async def get_operators_with_parents(conn: AsyncConnection, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """These operators and the parents they are registered under, by code, in one statement (a page that
    names every operator of a timeline would otherwise ask once per operator)."""
    if not codes:
        return {}
    named = sa.select(operators.c.code, operators.c.parent).where(operators.c.code.in_(sorted(set(codes)))).cte()
    wanted = sa.select(named.c.code).union(sa.select(named.c.parent).where(named.c.parent.is_not(None)))
    rows = (await conn.execute(sa.select(operators).where(operators.c.code.in_(wanted)))).mappings()
    return {row["code"]: dict(row) for row in rows}


async def insert_operator(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any] | None:
    """Insert; None when the code is taken."""
    stmt = insert(operators).values(**values).on_conflict_do_nothing().returning(operators)
    return await _first(conn, stmt)


async def update_operator(conn: AsyncConnection, code: str, values: dict[str, Any]) -> dict[str, Any] | None:
    return await _first(conn, _update(operators, operators.c.code == code, values))


async def operator_kinds(conn: AsyncConnection, codes: Iterable[str | None]) -> dict[str, str]:
    """The kind of each of these registered operators (code -> kind)."""
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.text("SELECT code, kind FROM operators WHERE code = ANY(CAST(:codes AS text[]))"), {"codes": wanted}
    )
    return {r.code: r.kind for r in rows}


async def scope_of(conn: AsyncConnection, code: str) -> dict[str, str]:
    """The operator and every operator registered under it, transitively: code -> status."""
    rows = await conn.execute(
        sa.text(
            """
            WITH RECURSIVE tree(code, status) AS (
                SELECT code, status FROM operators WHERE code = :code
                UNION
                SELECT o.code, o.status FROM operators o JOIN tree t ON o.parent = t.code
            )
            SELECT code, status FROM tree
            """
        ),
        {"code": code},
    )
    return {r.code: r.status for r in rows}


async def key_for_auth(conn: AsyncConnection, key_id: str) -> dict[str, Any] | None:
    stmt = (
        sa.select(
            api_keys.c.key_id,
            api_keys.c.secret_hash,
            api_keys.c.role,
            api_keys.c.operator_code,
            api_keys.c.scopes,
            operators.c.status.label("operator_status"),
        )
        .select_from(api_keys.outerjoin(operators, operators.c.code == api_keys.c.operator_code))
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
    )
    return await _first(conn, stmt)


async def insert_key(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    row = (await conn.execute(insert(api_keys).values(**values).returning(api_keys))).mappings().one()
    return dict(row)


async def get_key(conn: AsyncConnection, key_id: str) -> dict[str, Any] | None:
    return await _first(conn, sa.select(api_keys).where(api_keys.c.key_id == key_id))


async def revoke_key(conn: AsyncConnection, key_id: str) -> None:
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )


# -- the audit of what keys read (contract section 9; listed by sharing/repository.py) -----------------

_AUDIT = """
INSERT INTO audit_log (actor, role, action, subject, count, first_seq, last_seq, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
RETURNING id
"""


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: str,
    role: str,
    action: str,
    subject: str,
    count: int,
    first_seq: int | None = None,
    last_seq: int | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """One line of the audit: ``actor`` (a key id) with ``role`` did ``action`` on ``subject`` (a path or a
    subscription id), covering ``count`` items from ``first_seq`` to ``last_seq``; returns its id."""
    rows = await conn.exec_driver_sql(
        _AUDIT, (actor, role, action, subject, count, first_seq, last_seq, orjson.dumps(detail or {}).decode())
    )
    return int(rows.scalar_one())


# -- integrators -------------------------------------------------------------------------------------


async def unregistered(conn: AsyncConnection, codes: Sequence[str]) -> list[str]:
    """The codes among ``codes`` that name no registered operator, in the order given."""
    rows = await conn.execute(
        sa.text("SELECT code FROM operators WHERE code = ANY(CAST(:codes AS text[]))"), {"codes": list(codes)}
    )
    known = {r.code for r in rows}
    return [c for c in codes if c not in known]


async def insert_integrator(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    row = (await conn.execute(insert(integrators).values(**values).returning(integrators))).mappings().one()
    return dict(row)


async def get_integrator(conn: AsyncConnection, key_id: str) -> dict[str, Any] | None:
    stmt = sa.select(integrators).where(integrators.c.key_id == key_id)
    return await _first(conn, stmt)


async def list_integrators(conn: AsyncConnection) -> list[dict[str, Any]]:
    stmt = sa.select(integrators).order_by(integrators.c.created_at.desc(), integrators.c.key_id)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def update_integrator(conn: AsyncConnection, key_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
    return await _first(conn, _update(integrators, integrators.c.key_id == key_id, values))


async def revoke_integrator(conn: AsyncConnection, key_id: str) -> None:
    await conn.execute(
        sa.update(integrators)
        .where(integrators.c.key_id == key_id, integrators.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), updated_at=sa.func.now())
    )


# What the worker needs to authenticate and authorize a batch, in one statement: the integrators named in
# its headers, and each reported operator with every operator above it (its ancestry through `parent`) and
# their statuses. An operator is in a sender's scope when one of the sender's roots is in its ancestry.
# The depth cap guards against a cycle of parents, which registration cannot make.
_SENDERS = sa.text(
    """
    WITH RECURSIVE up(named, code, parent, status, depth) AS (
        SELECT o.code, o.code, o.parent, o.status, 0 FROM operators o WHERE o.code = ANY(CAST(:operators AS text[]))
        UNION ALL
        SELECT u.named, p.code, p.parent, p.status, u.depth + 1
          FROM up u JOIN operators p ON p.code = u.parent
         WHERE u.depth < 64
    )
    SELECT 'operator' AS kind, named AS id, code, status,
           CAST(NULL AS bytea) AS salt, CAST(NULL AS text[]) AS operators, CAST(NULL AS timestamptz) AS revoked_at
      FROM up
    UNION ALL
    SELECT 'integrator', key_id, NULL, NULL, salt, operators, revoked_at
      FROM integrators WHERE key_id = ANY(CAST(:key_ids AS text[]))
    """
)


@dataclass(frozen=True)
class IntegratorAuth:
    key_id: str
    salt: bytes
    operators: tuple[str, ...]
    revoked: bool


@dataclass
class Senders:
    integrators: dict[str, IntegratorAuth]
    # reported operator -> {operator at or above it -> status}
    ancestry: dict[str, dict[str, str]]


async def senders(conn: AsyncConnection, key_ids: Sequence[str], reported: Sequence[str]) -> Senders:
    found = Senders(integrators={}, ancestry={})
    if not key_ids and not reported:
        return found
    rows = await conn.execute(_SENDERS, {"key_ids": sorted(set(key_ids)), "operators": sorted(set(reported))})
    for r in rows:
        if r.kind == "integrator":
            found.integrators[r.id] = IntegratorAuth(r.id, bytes(r.salt), tuple(r.operators), r.revoked_at is not None)
        else:
            found.ancestry.setdefault(r.id, {})[r.code] = r.status
    return found


async def ancestry(conn: AsyncConnection, operators: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each registered operator with itself and every operator it is registered under (code -> status)."""
    return (await senders(conn, [], operators)).ancestry
