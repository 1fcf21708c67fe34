"""Use cases of intake: accept a posted batch all-or-nothing, and report event status."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import Scopes, require_events
from trace_service.alerts import repository as alerts_repo
from trace_service.chain import ownership
from trace_service.chain import writes as chain_repo
from trace_service.codes import service as codes
from trace_service.contract.events import (
    Catalogue,
    Event,
    canonical_bytes,
    describe_errors,
    fingerprint,
    in_future,
    in_future_detail,
    unstorable_strings,
)
from trace_service.db.uow import unit_of_work
from trace_service.errors import (
    BadRequest,
    Conflict,
    DependencyDown,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
)
from trace_service.ingest import metrics
from trace_service.ingest import repository as repo
from trace_service.ingest.publisher import EventPublisher
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing

log = structlog.get_logger(__name__)

STAFF_ONLY_PREFIX = "regulator."


@dataclass(frozen=True)
class Accepted:
    ids: list[uuid.UUID]
    statuses: list[dict[str, Any]] | None  # filled when the caller asked to wait
    complete: bool  # every event applied or rejected before the wait ran out


@dataclass
class Prepared:
    events: list[Event]
    canonical: list[bytes]
    hashes: list[bytes]
    batch: bool = False  # the body was an array: details carry an index


class IntakeService:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, publisher: EventPublisher, catalogue: Catalogue
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._publisher = publisher
        self._catalogue = catalogue
        self._slots = asyncio.Semaphore(settings.max_requests_in_flight)

    # -- validation (pure) ------------------------------------------------------------------------

    def parse(self, body: bytes, *, now: datetime) -> Prepared:
        """Validate the whole body; raise with every problem found, by index and field."""
        stripped = body.lstrip()
        batch = stripped[:1] == b"["
        adapter = self._catalogue.events if batch else self._catalogue.event
        try:
            parsed = adapter.validate_json(body)
        except ValidationError as exc:
            details = describe_errors(exc, batch=batch)
            if any(d["type"] == "json_invalid" for d in details):
                if unstorable := unstorable_strings(body, batch=batch):
                    raise InvalidInput("the events are not valid; nothing was accepted", details=unstorable) from None
                raise BadRequest("the body is not valid JSON", details=details, code="malformed_json") from None
            if batch and details and details[0].get("field") is None and "index" not in details[0]:
                message = f"send between 1 and {self._settings.max_events_per_request} events"
                raise InvalidInput(message, details=details) from None
            raise InvalidInput("the events are not valid; nothing was accepted", details=details) from None
        events: list[Event] = parsed if isinstance(parsed, list) else [parsed]

        skew = self._settings.future_skew_seconds
        late = [
            {"index": i, **in_future_detail(skew)}
            for i, ev in enumerate(events)
            if in_future(ev, now=now, skew_seconds=skew)
        ]
        if late:
            if not batch:
                late[0].pop("index")
            raise InvalidInput("the events are not valid; nothing was accepted", details=late)

        canonical = [canonical_bytes(ev) for ev in events]
        hashes = [fingerprint(c) for c in canonical]

        # The same id twice in one request: identical copies collapse, different content conflicts.
        seen: dict[uuid.UUID, int] = {}
        keep: list[int] = []
        clashes = []
        for i, ev in enumerate(events):
            eid = ev.event_id
            first = seen.get(eid)
            if first is None:
                seen[eid] = i
                keep.append(i)
            elif hashes[first] != hashes[i]:
                clashes.append({"index": i, "event_id": str(eid), "message": f"same event_id as item {first}"})
        if clashes:
            raise Conflict("an event_id appears twice with different content", details=clashes)
        if len(keep) != len(events):
            events = [events[i] for i in keep]
            canonical = [canonical[i] for i in keep]
            hashes = [hashes[i] for i in keep]
        return Prepared(events=events, canonical=canonical, hashes=hashes, batch=batch)

    # -- the use case ------------------------------------------------------------------------------

    async def accept(self, body: bytes, principal: Principal, *, wait: bool) -> Accepted:
        started = time.perf_counter()
        try:
            ids = await self._accept(body, principal)
        except DomainError as exc:
            metrics.REQUESTS_REFUSED.labels(exc.code).inc()
            raise
        metrics.EVENTS_ACCEPTED.inc(len(ids))
        metrics.ACCEPT_SECONDS.observe(time.perf_counter() - started)
        if not wait:
            return Accepted(ids=ids, statuses=None, complete=False)
        statuses, complete = await self._wait(ids)
        return Accepted(ids=ids, statuses=statuses, complete=complete)

    async def _accept(self, body: bytes, principal: Principal) -> list[uuid.UUID]:
        if principal.role == Role.DEPARTMENT:
            raise Forbidden("a department key only reads, within its scopes; it cannot post events")
        if self._slots.locked():
            raise Overloaded("too many requests in flight; retry later", retry_after=1)
        async with self._slots:
            prepared = self.parse(body, now=datetime.now(UTC))
            events = prepared.events
            ids = [ev.event_id for ev in events]
            operators = [ev.operator for ev in events]

            try:
                async with self._engine.connect() as conn:
                    await self._check_issued_codes(conn, prepared)
                    await self._authorize(conn, principal, events)
                    known = await repo.known_fingerprints(conn, ids)
            except (OperationalError, InterfaceError, OSError) as exc:
                raise self._db_down(exc) from exc

            conflicts = [
                {"index": i, "event_id": str(eid), "message": "this event_id is known with different content"}
                for i, (eid, digest) in enumerate(zip(ids, prepared.hashes, strict=True))
                if any(h != digest for h in known.get(eid, ()))
            ]
            if conflicts:
                raise Conflict("an event_id is already known with different content", details=conflicts)

            # The ledger first, with the messages exactly as they will be produced: once a 202 is
            # answered the event is in Postgres, whatever the broker forgets later (the worker's
            # redeliverer produces a waiting row again). Postgres down: 503, nothing produced.
            topic = self._settings.topic_events
            keys = [op.encode() for op in operators]
            entries = [
                repo.LedgerEntry(eid, op, digest, key, value, self._publisher.headers_for(principal, key, value))
                for eid, op, digest, key, value in zip(
                    ids, operators, prepared.hashes, keys, prepared.canonical, strict=True
                )
            ]
            try:
                async with unit_of_work(self._engine) as conn:
                    added = await repo.record_intake(conn, topic, entries)
            except (OperationalError, InterfaceError, OSError) as exc:
                raise self._db_down(exc) from exc

            try:
                await self._publisher.publish(topic, [(e.key, e.value, list(e.headers)) for e in entries])
            except DependencyDown:
                # Nothing is half-accepted: take back the rows this request added (rows of an earlier
                # attempt stay: that attempt may have answered 202). Messages the broker did take are
                # applied anyway and the client's retry is deduplicated on event_id.
                await self._forget(added)
                raise
        return ids

    async def _forget(self, ids: list[uuid.UUID]) -> None:
        try:
            async with unit_of_work(self._engine) as conn:
                await repo.forget_intake(conn, ids)
        except (DBAPIError, OSError) as exc:
            # The rows stay and the redeliverer produces them later: the events are applied although
            # this request answered 503, which a retry of the same ids makes harmless.
            log.warning("intake_ledger_cleanup_failed", error=type(exc).__name__, count=len(ids))

    async def _check_issued_codes(self, conn: Any, prepared: Prepared) -> None:
        """The rest of validation, which needs the issuers in the database: a code under an issuer's prefix
        must be a well-formed issued code (contract section 1). 422 like any other invalid field."""
        found = await codes.misissued_codes(conn, prepared.events)
        if found:
            details = [({"index": i} if prepared.batch else {}) | item for i in sorted(found) for item in found[i]]
            raise InvalidInput("the events are not valid; nothing was accepted", details=details)

    async def _authorize(self, conn: Any, principal: Principal, events: Sequence[Event]) -> None:
        problems = []
        if not principal.is_staff:
            for i, ev in enumerate(events):
                if ev.event_type.startswith(STAFF_ONLY_PREFIX):
                    problems.append({"index": i, "field": "event_type", "message": "only regulators post this"})
            scope = await access.reporting_scope(conn, principal)
            assert scope is not None
            for i, ev in enumerate(events):
                op = ev.operator
                status = scope.get(op)
                if status is None:
                    problems.append(
                        {
                            "index": i,
                            "field": "operator",
                            "message": f"{op} is not this key's operator or under it",
                        }
                    )
                elif status != "active":
                    problems.append({"index": i, "field": "operator", "message": f"operator {op} is suspended"})
        if problems:
            raise Forbidden("this key may not report these events; nothing was accepted", details=problems)
        if not principal.is_staff:
            await self._check_holders(conn, scope or {}, events)

    async def _check_holders(self, conn: Any, scope: dict[str, str], events: Sequence[Event]) -> None:
        """Contract section 7 where the API can already tell: a lot held by an operator this key does not report
        for (403 ``not_holder``), a code held by another operator (409 ``lot_taken``). Lots with no holder yet
        are the worker's to decide, whatever order the events arrive in."""
        held = await chain_repo.holders(conn, ownership.codes_of(events))
        if not held:
            return
        not_holder: list[dict[str, Any]] = []
        taken: list[dict[str, Any]] = []
        for i, ev in enumerate(events):
            verdict = ownership.judge(ev, held, lambda holder: holder in scope, staff=False)
            refusal = verdict.refusal
            if refusal is not None:
                item = {"index": i, "field": refusal.field, "lot": refusal.lot, "message": refusal.message}
                (taken if refusal.code == "lot_taken" else not_holder).append(item)
            elif verdict.ok:
                for claim in ownership.claims(ev):
                    if claim.creates:
                        held.setdefault(claim.code, ev.operator)
        if not_holder:
            raise Forbidden(
                "these events speak about lots this key's operators do not hold; nothing was accepted",
                details=not_holder,
                code="not_holder",
            )
        if taken:
            raise Conflict(
                "these lot codes are held by another operator; nothing was accepted", details=taken, code="lot_taken"
            )

    async def _wait(self, ids: list[uuid.UUID]) -> tuple[list[dict[str, Any]], bool]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.wait_timeout_seconds
        pause = 0.01
        while True:
            async with self._engine.connect() as conn:
                found = await repo.statuses(conn, ids)
            # An event parked until its lot's creating event arrives is as decided as it can be for now.
            done = all(
                found.get(i, {}).get("status") in ("applied", "rejected")
                or found.get(i, {}).get("reason") == "waiting_for_lot"
                for i in ids
            )
            if done or loop.time() >= deadline:
                async with self._engine.connect() as conn:
                    raised = await alerts_repo.alerts_of_events(conn, ids)
                return [self._status_body(i, found.get(i), raised.get(i, [])) for i in ids], done
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 1.5, 0.2)

    async def status(self, principal: Principal, event_id: uuid.UUID) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (await repo.statuses(conn, [event_id])).get(event_id)
            if row is None:
                raise NotFound(f"no event {event_id}")
            if principal.role == Role.OPERATOR:
                scope = await access.reporting_scope(conn, principal)
                if scope is None or row["operator"] not in scope:
                    # Do not reveal that another operator's event exists.
                    raise NotFound(f"no event {event_id}")
            if principal.role == Role.DEPARTMENT:
                # Applied events of the types in scope only; the rest is as unknown (contract section 9).
                scopes = require_events(principal)
                event_type = await sharing.event_type(conn, event_id) if row["status"] == "applied" else None
                if event_type is None or not scopes.covers_event(event_type):
                    raise NotFound(f"no event {event_id}")
            raised = await alerts_repo.alerts_of_events(conn, [event_id])
        alerts = raised.get(event_id, [])
        if principal.role == Role.DEPARTMENT:
            alerts = alerts if Scopes.of(principal).alerts else []
            async with unit_of_work(self._engine) as conn:
                await sharing.record_audit(
                    conn, actor=principal.key_id, role=principal.role.value, action="read",
                    subject=f"/v1/events/{event_id}", count=1,
                )  # fmt: skip
        return self._status_body(event_id, row, alerts)

    async def dead_letters(
        self, principal: Principal, *, cursor: str | None, code: str | None, limit: int
    ) -> dict[str, Any]:
        """Dead letters, newest first, for regulators: what producers sent that could not be applied."""
        access.require(principal, Role.ADMIN, Role.REGULATOR)
        before = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise InvalidInput("the cursor is not valid", details=[{"field": "cursor", "message": "not a cursor"}])
            before = int(cursor)
        async with self._engine.connect() as conn:
            rows = await repo.dead_letters(conn, before=before, code=code, limit=limit)
        items = []
        for r in rows:
            raw = bytes(r["raw"])
            try:
                text, encoding = raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(raw).decode(), "base64"
            items.append(
                {
                    "id": r["id"],
                    "topic": r["topic"],
                    "partition": r["kafka_partition"],
                    "offset": r["kafka_offset"],
                    "key": bytes(r["kafka_key"]).decode("utf-8", "replace") if r["kafka_key"] is not None else None,
                    "error_code": r["error_code"],
                    "error_message": r["error_message"],
                    "details": r["details"] or [],
                    "event_id": str(r["event_id"]) if r["event_id"] else None,
                    "operator": r["operator"],
                    "recorded_at": r["recorded_at"].isoformat(),
                    "raw": text,
                    "raw_encoding": encoding,
                }
            )
        next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
        return {"items": items, "next_cursor": next_cursor}

    @staticmethod
    def _status_body(event_id: uuid.UUID, row: dict[str, Any] | None, alerts: list[Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": str(event_id), "status": row["status"] if row else "accepted"}
        if row and row["status"] == "rejected":
            body["reason"] = row["reason"]
            body["message"] = row["message"]
        elif row and row["reason"] == "waiting_for_lot":
            # Accepted, and waiting for the creating event of the lots it names (contract section 7).
            body["waiting_for"] = row["message"].split(",")
        body["alerts"] = alerts
        return body

    def _db_down(self, exc: BaseException) -> DependencyDown:
        log.warning("database_unavailable", error=type(exc).__name__)
        return DependencyDown(
            "the database is unavailable; retry later", retry_after=self._settings.retry_after_seconds
        )
