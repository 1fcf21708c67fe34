"""SQL for operators and keys."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.db.tables import ApiKey, Operator

operators = Operator.__table__  # type: ignore[attr-defined]
api_keys = ApiKey.__table__  # type: ignore[attr-defined]


async def get_operator(conn: AsyncConnection, code: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(operators).where(operators.c.code == code))).mappings().first()
    return dict(row) if row else None


async def insert_operator(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any] | None:
    """Insert; None when the code is taken."""
    stmt = insert(operators).values(**values).on_conflict_do_nothing().returning(operators)
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def update_operator(conn: AsyncConnection, code: str, values: dict[str, Any]) -> dict[str, Any] | None:
    stmt = (
        sa.update(operators)
        .where(operators.c.code == code)
        .values(**values, updated_at=sa.func.now())
        .returning(operators)
    )
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


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
            operators.c.status.label("operator_status"),
        )
        .select_from(api_keys.outerjoin(operators, operators.c.code == api_keys.c.operator_code))
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
    )
    row = (await conn.execute(stmt)).mappings().first()
    return dict(row) if row else None


async def insert_key(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    row = (await conn.execute(insert(api_keys).values(**values).returning(api_keys))).mappings().one()
    return dict(row)


async def get_key(conn: AsyncConnection, key_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
    return dict(row) if row else None


async def revoke_key(conn: AsyncConnection, key_id: str) -> None:
    await conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
