"""SQL of the upward report: the day's events per node, streamed, and the state of each report file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.db.tables import ReportFile

report_files = ReportFile.__table__  # type: ignore[attr-defined]

# Ordered by node, then by time and id, so each node's file is written in one pass and its bytes are stable.
_EVENTS = sa.text(
    """
    SELECT e.operator, o.kind, o.region, e.envelope::text AS envelope, e.recorded_at, e.sha256
    FROM events e
    LEFT JOIN operators o ON o.code = e.operator
    WHERE e.occurred_at >= :start AND e.occurred_at < :end
    ORDER BY e.operator, e.occurred_at, e.event_id
    """
)


async def day_events(conn: AsyncConnection, start: datetime, end: datetime) -> AsyncIterator[Any]:
    """The events of the window, a few thousand rows at a time from a server-side cursor."""
    result = await conn.stream(_EVENTS.execution_options(yield_per=2000), {"start": start, "end": end})
    async for row in result:
        yield row


async def files(conn: AsyncConnection, day: date) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(sa.select(report_files).where(report_files.c.day == day))
    return {r["name"]: dict(r) for r in rows.mappings()}


async def save_files(conn: AsyncConnection, day: date, written: Sequence[dict[str, Any]]) -> None:
    """Record what each file holds now; a file whose bytes changed must be pushed again (its pushed digest
    no longer matches), one that did not keeps its push state."""
    if written:
        stmt = insert(report_files).values([{"day": day, **w} for w in written])
        changed = report_files.c.sha256 != stmt.excluded.sha256
        stmt = stmt.on_conflict_do_update(
            index_elements=[report_files.c.day, report_files.c.name],
            set_={
                "operator": stmt.excluded.operator,
                "records": stmt.excluded.records,
                "size_bytes": stmt.excluded.size_bytes,
                "sha256": stmt.excluded.sha256,
                "written_at": sa.case((changed, sa.func.now()), else_=report_files.c.written_at),
            },
        )
        await conn.execute(stmt)
    names = [w["name"] for w in written]
    await conn.execute(sa.delete(report_files).where(report_files.c.day == day, report_files.c.name.not_in(names)))


async def pushed(conn: AsyncConnection, day: date, name: str, sha256: bytes) -> None:
    await conn.execute(
        sa.update(report_files)
        .where(report_files.c.day == day, report_files.c.name == name)
        .values(pushed_sha256=sha256, pushed_at=sa.func.now(), last_error=None, push_attempts=0)
    )


async def push_failed(conn: AsyncConnection, day: date, name: str, error: str) -> None:
    await conn.execute(
        sa.update(report_files)
        .where(report_files.c.day == day, report_files.c.name == name)
        .values(push_attempts=report_files.c.push_attempts + 1, last_error=error[:500])
    )
