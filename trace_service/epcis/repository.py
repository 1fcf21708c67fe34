"""SQL of EPCIS: capture jobs, the statuses of their events, the event index and its query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.db.tables import EpcisCapture, EpcisEvent, StoredEvent

captures = EpcisCapture.__table__  # type: ignore[attr-defined]
events = EpcisEvent.__table__  # type: ignore[attr-defined]
stored_events = StoredEvent.__table__  # type: ignore[attr-defined]
TEXTS = ARRAY(sa.Text)

# -- capture ------------------------------------------------------------------------------------------------

# Ids the service already holds: applied, or in the intake ledger (accepted and on their way). Capturing
# them again produces nothing.
_KNOWN = sa.text(
    """
    SELECT event_id FROM events WHERE event_id = ANY(CAST(:ids AS uuid[]))
    UNION
    SELECT event_id FROM intake WHERE event_id = ANY(CAST(:ids AS uuid[]))
    """
)

_TAKEN_EPCIS_IDS = sa.text(
    "SELECT epcis_id, event_id FROM epcis_events WHERE epcis_id = ANY(CAST(:epcis_ids AS text[]))"
)


async def known_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    return {row.event_id for row in await conn.execute(_KNOWN, {"ids": list(ids)})}


async def taken_epcis_ids(conn: AsyncConnection, epcis_ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """eventIDs already in the index, and the event each names."""
    if not epcis_ids:
        return {}
    rows = await conn.execute(_TAKEN_EPCIS_IDS, {"epcis_ids": list(epcis_ids)})
    return {row.epcis_id: row.event_id for row in rows}


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    key_id: str
    operator: str
    created_at: datetime
    finished_at: datetime | None
    event_ids: list[uuid.UUID]
    event_hashes: list[str]
    epcis_ids: list[str | None]
    errors: list[Any] | None


async def insert_capture(
    conn: AsyncConnection,
    *,
    job_id: uuid.UUID,
    key_id: str,
    operator: str,
    event_ids: Sequence[uuid.UUID],
    event_hashes: Sequence[str],
    epcis_ids: Sequence[str | None],
) -> datetime:
    """Record a capture job; its creation time."""
    result = await conn.execute(
        sa.insert(captures)
        .values(
            id=job_id,
            key_id=key_id,
            operator=operator,
            event_ids=list(event_ids),
            event_hashes=list(event_hashes),
            epcis_ids=list(epcis_ids),
        )
        .returning(captures.c.created_at)
    )
    created: datetime = result.scalar_one()
    return created


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        key_id=row.key_id,
        operator=row.operator,
        created_at=row.created_at,
        finished_at=row.finished_at,
        event_ids=list(row.event_ids),
        event_hashes=list(row.event_hashes),
        epcis_ids=list(row.epcis_ids),
        errors=row.errors,
    )


async def capture(conn: AsyncConnection, job_id: uuid.UUID) -> Job | None:
    row = (await conn.execute(sa.select(captures).where(captures.c.id == job_id))).first()
    return _job(row) if row is not None else None


async def captures_of_key(
    conn: AsyncConnection, key_id: str, *, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Job]:
    """A key's jobs, newest first, keyset-paged on (created_at, id)."""
    query = sa.select(captures).where(captures.c.key_id == key_id)
    if before is not None:
        query = query.where(sa.tuple_(captures.c.created_at, captures.c.id) < sa.tuple_(*before))
    query = query.order_by(captures.c.created_at.desc(), captures.c.id.desc()).limit(limit)
    return [_job(row) for row in await conn.execute(query)]


# One row per event of a job, in job order: applied (with when), or the first dead letter that rejects it
# (a refused copy naming another operator than the accepted one does not, as in ingest's statuses).
_EVENT_STATES = sa.text(
    """
    SELECT u.ord, u.id, e.recorded_at AS applied_at, d.error_code, d.error_message, d.recorded_at AS rejected_at
    FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS u(id, ord)
    LEFT JOIN events e ON e.event_id = u.id
    LEFT JOIN LATERAL (
        SELECT dl.error_code, dl.error_message, dl.recorded_at
        FROM dead_letters dl
        WHERE dl.event_id = u.id
          AND NOT EXISTS (SELECT 1 FROM intake i WHERE i.event_id = dl.event_id AND i.operator <> dl.operator)
        ORDER BY dl.id
        LIMIT 1
    ) d ON e.event_id IS NULL
    ORDER BY u.ord
    """
)


@dataclass(frozen=True)
class EventState:
    event_id: uuid.UUID
    applied_at: datetime | None
    error_code: str | None
    error_message: str | None
    rejected_at: datetime | None


async def event_states(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[EventState]:
    rows = await conn.execute(_EVENT_STATES, {"ids": list(ids)})
    return [EventState(r.id, r.applied_at, r.error_code, r.error_message, r.rejected_at) for r in rows]


async def finish_capture(conn: AsyncConnection, job_id: uuid.UUID, *, finished_at: datetime, errors: list[Any]) -> None:
    """Keep the outcome of a job that is done (its events' statuses no longer change)."""
    await conn.execute(
        sa.update(captures)
        .where(captures.c.id == job_id, captures.c.finished_at.is_(None))
        .values(finished_at=finished_at, errors=errors)
    )


# -- the event index (written by the worker: epcis/store.py) ------------------------------------------------

# The index columns by name, next to the statement that reads them from a JSON array of row objects.
COLUMNS = (
    ("event_id", "uuid"),
    ("epcis_id", "text"),
    ("type", "text"),
    ("event_time", "timestamptz"),
    ("biz_step", "text"),
    ("disposition", "text"),
    ("action", "text"),
    ("read_point", "text"),
    ("biz_location", "text"),
    ("operator", "text"),
    ("epcs", "text[]"),
    ("input_epcs", "text[]"),
    ("output_epcs", "text[]"),
    ("parent_id", "text"),
    ("doc", "jsonb"),
    ("context", "jsonb"),
    ("error_declaration", "jsonb"),
)
_NAMES = ", ".join(name for name, _ in COLUMNS)
_RECORD = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)

_INSERT_EVENTS = sa.text(
    f"""
    INSERT INTO epcis_events ({_NAMES})
    SELECT {_NAMES} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_RECORD})
    ORDER BY event_id
    ON CONFLICT DO NOTHING
    """  # noqa: S608 - constant SQL: the names are the COLUMNS above
)

# An error declaration lands on the row of the event it corrects: the same envelope id (the same event hash)
# or the same eventID. When that event is not in the index yet, the corrected event is stored under its own
# id with the declaration, and the original, arriving later, finds its row taken.
_DECLARE_ERRORS = sa.text(
    f"""
    WITH d AS (SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_RECORD})),
    corrected AS (
        UPDATE epcis_events e SET error_declaration = d.error_declaration
        FROM d
        WHERE e.event_id = d.event_id OR e.epcis_id = d.epcis_id
        RETURNING d.event_id
    )
    INSERT INTO epcis_events ({_NAMES})
    SELECT {_NAMES} FROM d WHERE d.event_id NOT IN (SELECT event_id FROM corrected)
    ORDER BY event_id
    ON CONFLICT DO NOTHING
    """  # noqa: S608 - constant SQL: the names are the COLUMNS above
)


async def insert_events(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(_INSERT_EVENTS, {"rows": orjson.dumps(list(rows)).decode()})


async def declare_errors(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(_DECLARE_ERRORS, {"rows": orjson.dumps(list(rows)).decode()})


# -- query --------------------------------------------------------------------------------------------------


@dataclass
class Filters:
    """``GET /epcis/events`` parameters, already parsed; each list is an OR of its values."""

    types: list[str] = field(default_factory=list)
    ge_event_time: datetime | None = None
    lt_event_time: datetime | None = None
    ge_record_time: datetime | None = None
    lt_record_time: datetime | None = None
    actions: list[str] = field(default_factory=list)
    biz_steps: list[str] = field(default_factory=list)
    dispositions: list[str] = field(default_factory=list)
    read_points: list[str] = field(default_factory=list)
    biz_locations: list[str] = field(default_factory=list)
    epc: list[str] = field(default_factory=list)
    any_epc: list[str] = field(default_factory=list)
    parent_id: list[str] = field(default_factory=list)
    input_epc: list[str] = field(default_factory=list)
    output_epc: list[str] = field(default_factory=list)
    epc_class: list[str] = field(default_factory=list)
    any_epc_class: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


def _texts(values: Sequence[str]) -> Any:
    return sa.bindparam(None, list(values), type_=TEXTS)


def _has_any(key: str, values: Sequence[str]) -> Any:
    return events.c.doc[key].op("?|")(_texts(values))


_OBSERVED = """EXISTS (SELECT 1 FROM unnest(epcis_events.epcs) x WHERE x = ANY(:observed_classes)
    AND NOT x = ANY(epcis_events.input_epcs) AND NOT x = ANY(epcis_events.output_epcs))"""


def _conditions(f: Filters) -> list[Any]:
    c = events.c
    where: list[Any] = []
    for column, values in (
        (c.type, f.types),
        (c.action, f.actions),
        (c.biz_step, f.biz_steps),
        (c.disposition, f.dispositions),
        (c.read_point, f.read_points),
        (c.biz_location, f.biz_locations),
        (c.epcis_id, f.event_ids),
        (c.parent_id, f.parent_id),
    ):
        if values:
            where.append(column == sa.func.any(_texts(values)))
    if f.ge_event_time is not None:
        where.append(c.event_time >= f.ge_event_time)
    if f.lt_event_time is not None:
        where.append(c.event_time < f.lt_event_time)
    if f.ge_record_time is not None:
        where.append(c.record_time >= f.ge_record_time)
    if f.lt_record_time is not None:
        where.append(c.record_time < f.lt_record_time)
    # The GIN-indexed arrays narrow the rows; the document then says in which list the EPC stands. A domestic
    # row has no document (rendered when read), and its rendering has no EPC list nor parentID: these
    # conditions are null for it, as they were false for its rendering.
    if f.epc:
        where += [c.epcs.op("&&")(_texts(f.epc)), sa.or_(_has_any("epcList", f.epc), _has_any("childEPCs", f.epc))]
    if f.any_epc:
        where += [
            c.epcs.op("&&")(_texts(f.any_epc)),
            sa.or_(
                *(_has_any(key, f.any_epc) for key in ("epcList", "childEPCs", "inputEPCList", "outputEPCList")),
                c.parent_id == sa.func.any(_texts(f.any_epc)),
            ),
        ]
    if f.input_epc:
        where += [c.input_epcs.op("&&")(_texts(f.input_epc)), _has_any("inputEPCList", f.input_epc)]
    if f.output_epc:
        where += [c.output_epcs.op("&&")(_texts(f.output_epc)), _has_any("outputEPCList", f.output_epc)]
    # MATCH_epcClass: the quantity lists of what is observed or aggregated; MATCH_anyEPCClass: any quantity list.
    for wanted, lists in (
        (f.epc_class, ("quantityList", "childQuantityList")),
        (f.any_epc_class, ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")),
    ):
        if wanted:
            name = f"classes_{len(lists)}"
            # The list names are the constants above, never input: only the wanted classes are bound.
            joined = " || ".join(f"coalesce(epcis_events.doc->'{key}', '[]')" for key in lists)
            statement = "EXISTS (SELECT 1 FROM jsonb_array_elements(" + joined + ") q "  # noqa: S608 (constants)
            statement += "WHERE q->>'epcClass' = ANY(:" + name + "))"
            in_doc = sa.text(statement).bindparams(sa.bindparam(name, list(wanted), type_=TEXTS))
            # A domestic row (no doc) names its lots only as classes of quantity lists: any of them for
            # MATCH_anyEPCClass, those of ``quantityList`` (not a transformation's inputs or outputs) for
            # MATCH_epcClass.
            domestic: Any = c.doc.is_(None)
            if len(lists) == 2:
                observed = sa.text(_OBSERVED).bindparams(sa.bindparam("observed_classes", list(wanted), type_=TEXTS))
                domestic = sa.and_(domestic, observed)
            classes = sa.or_(in_doc, domestic)
            where += [c.epcs.op("&&")(_texts(wanted)), classes]
    return where


@dataclass(frozen=True)
class StoredEpcisEvent:
    """An index row as read: a captured event's ``doc``, or (``doc`` None) a domestic event's stored envelope,
    which the service renders."""

    event_id: uuid.UUID
    record_time: datetime
    operator: str
    doc: dict[str, Any] | None
    envelope: dict[str, Any] | None
    context: Any
    error_declaration: dict[str, Any] | None


_OUT = (
    events.c.event_id,
    events.c.record_time,
    events.c.operator,
    events.c.doc,
    stored_events.c.envelope,
    events.c.context,
    events.c.error_declaration,
)
# The envelope of a domestic row only (a captured row's envelope is not needed, and a declaration's row may
# name no stored event).
_FROM = events.outerjoin(stored_events, sa.and_(events.c.doc.is_(None), stored_events.c.event_id == events.c.event_id))


def _stored(row: Any) -> StoredEpcisEvent:
    return StoredEpcisEvent(
        row.event_id, row.record_time, row.operator, row.doc, row.envelope, row.context, row.error_declaration
    )


async def query_events(
    conn: AsyncConnection,
    filters: Filters,
    *,
    operators: Sequence[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[StoredEpcisEvent]:
    """Events matching every filter, oldest record first, after the keyset ``after``; ``operators`` None is
    every operator (staff)."""
    where = _conditions(filters)
    if operators is not None:
        where.append(events.c.operator == sa.func.any(_texts(operators)))
    if after is not None:
        where.append(sa.tuple_(events.c.record_time, events.c.event_id) > sa.tuple_(*after))
    query = (
        sa.select(*_OUT).select_from(_FROM).where(*where).order_by(events.c.record_time, events.c.event_id).limit(limit)
    )
    return [_stored(row) for row in await conn.execute(query)]


async def event_by_epcis_id(conn: AsyncConnection, epcis_id: str) -> StoredEpcisEvent | None:
    query = sa.select(*_OUT).select_from(_FROM).where(events.c.epcis_id == epcis_id)
    row = (await conn.execute(query)).first()
    return _stored(row) if row is not None else None
