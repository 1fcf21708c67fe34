"""Use cases of sharing: reading the stream for an audience, the pull feed, exports and the audit.

An :class:`Audience` is who reads (its :class:`~trace_service.access.scopes.Scopes`) and, for a subscription,
what it asked for (kinds, event-type patterns, alert rules, region prefixes). :func:`page` is the one reader
of the stream: the feed, the delivery process and anything else that shares items go through it, so the
filtering and the removal of personal data happen in one place.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import scopes as scope_rules
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import Scopes
from trace_service.contract import personal
from trace_service.db.uow import unit_of_work
from trace_service.errors import Forbidden, InvalidInput
from trace_service.sharing import repository as repo

log = structlog.get_logger(__name__)

KINDS = frozenset({"event", "alert", "market"})
MAX_PAGE = 1000
# Items scanned at most per page for a reader that filters: a narrow audience moves its cursor this far at a
# time through items that are not for it, instead of reading the stream to its end in one statement.
SCAN_ROWS = 20_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NIL = uuid.UUID(int=0)


@dataclass(frozen=True)
class Audience:
    """Who reads the stream and what it asked for; None means "everything its scopes allow"."""

    scopes: Scopes
    kinds: frozenset[str] | None = None
    event_types: tuple[str, ...] | None = None  # event-type patterns (access/scopes.py)
    rules: frozenset[str] | None = None  # alert rules
    regions: tuple[str, ...] | None = None  # region code prefixes

    def filter(self) -> repo.Filter:
        """The SQL filter: the kinds and event types the scopes allow, narrowed by what was asked for."""
        allowed = {k for k, ok in (("event", self.scopes.any_events), ("alert", self.scopes.alerts),
                                   ("market", self.scopes.market)) if ok}  # fmt: skip
        kinds = allowed & set(self.kinds) if self.kinds is not None else allowed
        types: set[str] | None = None
        if not self.scopes.all_events:
            types = set(self.scopes.event_types)
        if self.event_types is not None:
            asked = set().union(*(scope_rules.expand(p) for p in self.event_types))
            types = asked if types is None else types & asked
        if types is not None and not types:
            kinds.discard("event")
        return repo.Filter(
            kinds=sorted(kinds),
            event_types=None if types is None else sorted(types),
            rules=None if self.rules is None else sorted(self.rules),
            regions=None if self.regions is None else sorted(set(self.regions)),
        )


def shape(row: repo.Row, *, personal_ok: bool) -> dict[str, Any]:
    """One item as a reader receives it: ``{"seq", "kind", "item"}``, without personal data unless allowed."""
    seq, kind, _, text = row
    item = orjson.loads(text)
    if kind == "event" and not personal_ok:
        item = personal.redact(item)
    return {"seq": seq, "kind": kind, "item": item}


def _item_json(row: repo.Row, personal_ok: bool) -> bytes:
    """One item as JSON, the stored text passed through unless personal fields must come out of it."""
    seq, kind, event_type, text = row
    if kind == "event" and not personal_ok and personal.has_personal(event_type):
        body = orjson.dumps(personal.redact(orjson.loads(text)))
    else:
        body = text.encode()
    return b'{"seq":%d,"kind":"%s","item":%s}' % (seq, kind.encode(), body)


async def page(
    conn: AsyncConnection, audience: Audience, after: int, limit: int, *, scan: int = SCAN_ROWS
) -> tuple[list[dict[str, Any]], int]:
    """The items after ``after`` this audience may have (filtered, redacted, in seq order, at most
    ``limit``), and the cursor to continue from: the last seq scanned, ``after`` when there was nothing new."""
    rows, next_seq = await repo.read_after(conn, after, max(1, min(limit, MAX_PAGE)), audience.filter(), scan=scan)
    return [shape(row, personal_ok=audience.scopes.personal) for row in rows], next_seq


async def head(conn: AsyncConnection) -> int:
    """The highest committed seq (0 for an empty stream)."""
    return await repo.head(conn)


# -- the pull feed ---------------------------------------------------------------------------------------


def reader_scopes(principal: Principal) -> Scopes:
    """Scopes of a caller of the sharing endpoints: departments, regulators and admins; never operators."""
    if principal.role == Role.OPERATOR:
        raise Forbidden("the feed and exports are for departments, regulators and admins; operators read their lots")
    return Scopes.of(principal)


async def feed(conn: AsyncConnection, principal: Principal, after: int, limit: int, *, scan: int = SCAN_ROWS) -> bytes:
    """``GET /v1/feed``: a page within the caller's scopes as the JSON body, recorded in the audit.

    The same items as :func:`page`, but the stored JSON is passed through as it is wherever nothing must be
    removed from it: parsing and serializing every item again would cost more than the query."""
    audience = Audience(scopes=reader_scopes(principal))
    rows, next_seq = await repo.read_after(conn, after, max(1, min(limit, MAX_PAGE)), audience.filter(), scan=scan)
    await repo.record_audit(
        conn,
        actor=principal.key_id,
        role=principal.role.value,
        action="feed",
        subject="/v1/feed",
        count=len(rows),
        first_seq=rows[0][0] if rows else None,
        last_seq=rows[-1][0] if rows else None,
        detail={"after": after, "next": next_seq},
    )
    personal_ok = audience.scopes.personal
    return b'{"items":[%s],"next":%d}' % (b",".join(_item_json(row, personal_ok) for row in rows), next_seq)


# -- exports ---------------------------------------------------------------------------------------------

CSV_FIELDS = ("event_id", "event_type", "occurred_at", "operator", "recorded_at", "source", "data")


@dataclass(frozen=True)
class Export:
    """A checked export request: the window, the event types, whether personal data stays, the format."""

    start: datetime
    end: datetime
    event_types: tuple[str, ...]
    personal: bool
    format: str


def plan_export(
    principal: Principal, start: datetime, end: datetime, patterns: Sequence[str] | None, fmt: str
) -> Export:
    """Check an export request against the caller's scopes: the types asked for must be within them."""
    if principal.role not in (Role.DEPARTMENT, Role.REGULATOR, Role.ADMIN):
        raise Forbidden("exports are for departments, regulators and admins")
    scopes = Scopes.of(principal)
    if not scopes.any_events:
        raise Forbidden(scope_rules.NO_EVENT_SCOPE)
    if end <= start:
        raise InvalidInput("`to` must be after `from`", details=[{"field": "to", "message": "must be after from"}])
    types = set(scopes.event_types)
    if patterns:
        asked: set[str] = set()
        for pattern in patterns:
            try:
                asked |= scope_rules.expand(scope_rules.check_event_pattern(pattern))
            except ValueError as exc:
                raise InvalidInput(str(exc), details=[{"field": "types", "message": str(exc)}]) from None
        outside = sorted(asked - types)
        if outside:
            raise Forbidden(scope_rules.not_covered(outside), details=[{"field": "types", "outside": outside}])
        types = asked
    return Export(start, end, tuple(sorted(types)), scopes.personal, fmt)


async def open_export(conn: AsyncConnection, principal: Principal, plan: Export, subject: str) -> int:
    """The export's audit line, committed with the request's transaction before the first byte is sent."""
    return await repo.open_audit(
        conn,
        actor=principal.key_id,
        role=principal.role.value,
        action="export",
        subject=subject,
        detail={
            "from": plan.start.isoformat(),
            "to": plan.end.isoformat(),
            "types": list(plan.event_types),
            "format": plan.format,
            "complete": False,
        },
    )


async def export_body(
    reader: AsyncEngine, writer: AsyncEngine, plan: Export, audit_id: int, *, page_rows: int
) -> AsyncIterator[bytes]:
    """The export's body, one keyset page at a time, each read on a connection of its own: the range is never
    in memory, and no connection is held while the client reads. The audit line gets the count sent."""
    sent = 0
    complete = False
    try:
        if plan.format == "csv":
            yield ("\ufeff" + ",".join(CSV_FIELDS) + "\r\n").encode()
        after = (plan.start, NIL)
        while True:
            async with reader.connect() as conn:
                rows = await repo.export_page(
                    conn, start=plan.start, end=plan.end, event_types=plan.event_types, after=after, limit=page_rows
                )
            if rows:
                yield b"".join(_export_line(text, plan) for _, _, _, text in rows)
                sent += len(rows)
            if len(rows) < page_rows:
                complete = True
                return
            after = (rows[-1][0], rows[-1][1])
    finally:
        # Also when the client went away mid-way: the audit says how much left.
        with anyio.CancelScope(shield=True):
            try:
                async with unit_of_work(writer) as conn:
                    await repo.close_audit(conn, audit_id, sent, complete=complete)
            except Exception as exc:  # the export itself is over; a lost count must not hide its error
                log.warning("export_audit_not_closed", audit_id=audit_id, error=type(exc).__name__)


def _export_line(text: str, plan: Export) -> bytes:
    item = orjson.loads(text)
    if not plan.personal:
        item = personal.redact(item)
    if plan.format == "ndjson":
        return orjson.dumps(item) + b"\n"
    out = io.StringIO()
    row = {k: item.get(k) for k in CSV_FIELDS}
    row["data"] = orjson.dumps(item.get("data")).decode()
    csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\r\n").writerow(
        {k: _csv_safe(v) for k, v in row.items()}
    )
    return out.getvalue().encode()


def _csv_safe(value: Any) -> Any:
    # Codes and texts come from outside: never let a spreadsheet read a cell as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# -- the audit -------------------------------------------------------------------------------------------


def _audit_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(str(entry_id).encode()).decode().rstrip("=")


def _parse_audit_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.isdigit() or len(raw) > 18:
            raise ValueError(raw)
    except ValueError:
        raise InvalidInput(
            "the cursor is not valid", details=[{"field": "cursor", "message": "not a cursor"}]
        ) from None
    return int(raw)


async def audit(
    conn: AsyncConnection,
    principal: Principal,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """``GET /v1/audit``: newest first, for regulators and admins."""
    if principal.role not in (Role.REGULATOR, Role.ADMIN):
        raise Forbidden("the audit is for regulators and admins")
    before = _parse_audit_cursor(cursor) if cursor else None
    items = await repo.list_audit(conn, actor=actor, action=action, since=since, before=before, limit=limit)
    next_cursor = _audit_cursor(items[-1]["id"]) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}


async def record_read(conn: AsyncConnection, principal: Principal, subject: str, count: int) -> None:
    """A department's read of a read endpoint, in the audit (staff reads are not sharing)."""
    if principal.role != Role.DEPARTMENT:
        return
    await repo.record_audit(
        conn, actor=principal.key_id, role=principal.role.value, action="read", subject=subject, count=count
    )
