"""Use cases of EPCIS over HTTP: capture a document, follow its capture job, query the event index.

Capture validates the whole document, then turns each event into an ``epcis.event`` envelope (its id from
the CBV event hash) and hands the new ones to intake, the same ledger and produce path as
``POST /v1/events``; the worker then applies and indexes them (``epcis/store.py``). Nothing is written by
the API itself but the ledger rows and the capture job.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.contract.epcis import hashing, mapping, schema
from trace_service.contract.events import EPCIS_URIS, epcis_event_effects
from trace_service.db.uow import unit_of_work
from trace_service.epcis import problems
from trace_service.epcis import repository as repo
from trace_service.epcis.store import EPCIS_EVENT, biz_step, disposition
from trace_service.errors import Conflict, DomainError, Forbidden, InvalidInput
from trace_service.settings import Settings

EVENT_LIST = "/epcisBody/eventList"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 1000
MAX_PROBLEMS = 50

# The query parameters of GET /epcis/events (EPCIS 2.0 SimpleEventQuery, as the REST binding names them).
LIST_PARAMETERS = {
    "eventType": "types",
    "EQ_action": "actions",
    "EQ_bizStep": "biz_steps",
    "EQ_disposition": "dispositions",
    "EQ_readPoint": "read_points",
    "EQ_bizLocation": "biz_locations",
    "MATCH_epc": "epc",
    "MATCH_anyEPC": "any_epc",
    "MATCH_parentID": "parent_id",
    "MATCH_inputEPC": "input_epc",
    "MATCH_outputEPC": "output_epc",
    "MATCH_epcClass": "epc_class",
    "MATCH_anyEPCClass": "any_epc_class",
    "EQ_eventID": "event_ids",
}
TIME_PARAMETERS = {
    "GE_eventTime": "ge_event_time",
    "LT_eventTime": "lt_event_time",
    "GE_recordTime": "ge_record_time",
    "LT_recordTime": "lt_record_time",
}
PAGING = ("perPage", "nextPageToken")
PARAMETERS = frozenset(LIST_PARAMETERS) | frozenset(TIME_PARAMETERS) | frozenset(PAGING)
ACTIONS = frozenset({"ADD", "OBSERVE", "DELETE"})


class Intake(Protocol):
    """What capture needs of intake (``ingest.service.IntakeService``, passed in by the composition root)."""

    async def accept(self, body: bytes, principal: Principal, *, wait: bool) -> Any: ...


@dataclass(frozen=True)
class Captured:
    capture_id: uuid.UUID
    events: int  # in the document
    produced: int  # new to the service, handed to intake


@dataclass(frozen=True)
class Page:
    body: dict[str, Any]
    next_token: str | None


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pointer(index: int, rest: str = "") -> str:
    return f"{EVENT_LIST}/{index}{rest}"


def _context_items(context: Any) -> list[Any]:
    if context is None:
        return list(mapping.CONTEXT)
    if isinstance(context, list):
        return list(context)
    return [context]


def union_context(contexts: Sequence[Any]) -> list[Any]:
    """The contexts of several events as one ``@context``: each distinct item once, in order of appearance."""
    seen: set[bytes] = set()
    out: list[Any] = []
    for context in contexts:
        for item in _context_items(context):
            key = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out or list(mapping.CONTEXT)


def served(stored: repo.StoredEpcisEvent) -> dict[str, Any]:
    """An event as the query serves it: as stored (a domestic event rendered from its stored envelope), with the
    repository's recordTime and any declaration."""
    if stored.doc is not None:
        event = dict(stored.doc)
    else:
        assert stored.envelope is not None  # a domestic row: its event is stored with it (same transaction)
        event = mapping.render(stored.envelope, EPCIS_URIS)
    event["recordTime"] = _time(stored.record_time)
    if stored.error_declaration is not None:
        event["errorDeclaration"] = stored.error_declaration
    return event


class EpcisService:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, intake: Intake, read_engine: AsyncEngine | None = None
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._read = read_engine or engine
        self._intake = intake

    @property
    def capture_limit(self) -> int:
        return self._settings.max_events_per_request

    # -- capture ------------------------------------------------------------------------------------------

    def _document(self, body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The document and its events, validated whole against the standard's schema."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise problems.invalid("the body is not valid JSON", [{"pointer": "", "detail": str(exc)}]) from None
        body_list = doc.get("epcisBody") if isinstance(doc, dict) else None
        events = body_list.get("eventList") if isinstance(body_list, dict) else None
        if isinstance(events, list) and len(events) > self.capture_limit:
            raise problems.too_many(
                f"the document holds {len(events)} events; at most {self.capture_limit} are captured per request"
            )
        found = schema.validate_document(doc)
        if found:
            raise problems.invalid(
                "the document is not a valid EPCIS 2.0 document; nothing was captured",
                [{"pointer": p.pointer, "detail": p.message} for p in found[:MAX_PROBLEMS]],
            )
        assert isinstance(doc, dict)
        assert isinstance(events, list)
        return doc, events

    async def capture(self, body: bytes, principal: Principal) -> Captured:
        if principal.role != Role.OPERATOR or principal.operator is None:
            raise problems.forbidden("capture takes an operator key: events are reported by an operator")
        doc, events = self._document(body)
        context = doc.get("@context")

        operators: list[str] = []
        hashes: list[str] = []
        ids: list[uuid.UUID] = []
        found: list[dict[str, Any]] = []
        for i, event in enumerate(events):
            operators.append(mapping.reporting_operator(event, EPCIS_URIS) or principal.operator)
            for p in epcis_event_effects(event).problems:
                pointer = p.pointer if p.pointer.startswith(EVENT_LIST) else _pointer(i, p.pointer)
                found.append({"pointer": pointer, "detail": p.message})
            try:
                digest = hashing.event_hash(event, context)
            except hashing.Unhashable as exc:
                found.append({"pointer": _pointer(i), "detail": str(exc)})
                continue
            hashes.append(digest)
            ids.append(hashing.envelope_id(digest, error_declaration="errorDeclaration" in event))
        if found:
            raise problems.invalid("events of the document cannot be captured; nothing was captured", found)

        async with self._engine.connect() as conn:
            scope = await access.reporting_scope(conn, principal)
            assert scope is not None  # an operator key
            refused = [
                {"pointer": _pointer(i), "detail": self._refusal(op, scope.get(op))}
                for i, op in enumerate(operators)
                if scope.get(op) != "active"
            ]
            if refused:
                raise problems.forbidden("this key may not report these events; nothing was captured", refused)
            known = await repo.known_ids(conn, ids)
            sent_ids = [e.get("eventID") for e in events]
            taken = await repo.taken_epcis_ids(conn, [s for s in sent_ids if isinstance(s, str)])
        clashes = [
            {"pointer": _pointer(i, "/eventID"), "detail": f"eventID {sent} names another event already captured"}
            for i, sent in enumerate(sent_ids)
            if isinstance(sent, str) and sent in taken and taken[sent] != ids[i] and "errorDeclaration" not in events[i]
        ]
        if clashes:
            raise problems.invalid("eventIDs of the document are taken; nothing was captured", clashes)

        # One envelope per event the service does not hold yet (the first of repeats inside the document).
        positions: list[int] = []
        envelopes: list[dict[str, Any]] = []
        seen: set[uuid.UUID] = set()
        for i, event in enumerate(events):
            if ids[i] in known or ids[i] in seen:
                continue
            seen.add(ids[i])
            positions.append(i)
            envelopes.append(
                {
                    "event_id": str(ids[i]),
                    "event_type": EPCIS_EVENT,
                    "occurred_at": event.get("eventTime"),
                    "operator": operators[i],
                    "data": {"event": event, "context": context},
                }
            )
        if envelopes:
            try:
                await self._intake.accept(orjson.dumps(envelopes), principal, wait=False)
            except DomainError as exc:
                raise self._translated(exc, positions) from None

        job_id = uuid.uuid4()
        async with unit_of_work(self._engine) as conn:
            await repo.insert_capture(
                conn,
                job_id=job_id,
                key_id=principal.key_id,
                operator=principal.operator,
                event_ids=ids,
                event_hashes=hashes,
                epcis_ids=[s if isinstance(s, str) else None for s in sent_ids],
            )
        return Captured(job_id, len(events), len(envelopes))

    @staticmethod
    def _refusal(operator: str, status: str | None) -> str:
        if status is None:
            return f"the reporting operator {operator} is not this key's operator or under it"
        return f"the reporting operator {operator} is suspended"

    @staticmethod
    def _translated(exc: DomainError, positions: list[int]) -> DomainError:
        """Intake's refusal in the binding's terms, its items named by their place in the document."""
        details = []
        for item in exc.details:
            if not isinstance(item, dict):
                continue
            index = item.get("index", 0)
            at = positions[index] if isinstance(index, int) and 0 <= index < len(positions) else 0
            field = str(item.get("field") or "")
            details.append({"pointer": _pointer(at), "field": field or None, "detail": item.get("message")})
        if isinstance(exc, InvalidInput):
            return problems.invalid(exc.message, details)
        if isinstance(exc, Forbidden):
            return problems.forbidden(exc.message, details)
        if isinstance(exc, Conflict):
            return problems.conflict(exc.message, details)
        return exc  # outages (503 with Retry-After) and the rest as intake says

    # -- capture jobs ---------------------------------------------------------------------------------------

    @staticmethod
    def _may_capture(principal: Principal) -> None:
        if principal.role == Role.DEPARTMENT:
            raise problems.forbidden("a department key captures nothing: it reads the shared feed")

    def _may_see(self, principal: Principal, job: repo.Job) -> bool:
        if principal.is_staff:
            return True
        return principal.role == Role.OPERATOR and principal.operator == job.operator

    async def _job_body(self, job: repo.Job) -> dict[str, Any]:
        if job.finished_at is not None and job.errors is not None:
            running, errors, finished = False, job.errors, job.finished_at
        else:
            async with self._read.connect() as conn:
                states = await repo.event_states(conn, job.event_ids)
            running = any(s.applied_at is None and s.error_code is None for s in states)
            errors = [
                {
                    "type": problems.VALIDATION,
                    "title": s.error_code,
                    "status": 400,
                    "detail": s.error_message,
                    "eventID": job.epcis_ids[i] or job.event_hashes[i],
                    "eventHash": job.event_hashes[i],
                    "pointer": _pointer(i),
                }
                for i, s in enumerate(states)
                if s.applied_at is None and s.error_code is not None
            ]
            finished = None
            if not running:
                times = [t for s in states for t in (s.applied_at, s.rejected_at) if t is not None]
                finished = max([job.created_at, *times])
                async with unit_of_work(self._engine) as conn:
                    await repo.finish_capture(conn, job.id, finished_at=finished, errors=errors)
        body: dict[str, Any] = {"captureID": str(job.id), "createdAt": _time(job.created_at)}
        if finished is not None:
            body["finishedAt"] = _time(finished)
        body |= {
            "running": running,
            "success": not running and not errors,
            "captureErrorBehaviour": "rollback",
            "errors": errors,
        }
        return body

    async def capture_job(self, principal: Principal, capture_id: str) -> dict[str, Any]:
        self._may_capture(principal)
        try:
            job_id = uuid.UUID(capture_id)
        except ValueError:
            raise problems.not_found(f"no capture job {capture_id}") from None
        async with self._read.connect() as conn:
            job = await repo.capture(conn, job_id)
        if job is None or not self._may_see(principal, job):
            raise problems.not_found(f"no capture job {capture_id}")
        return await self._job_body(job)

    async def capture_jobs(self, principal: Principal, *, per_page: int, token: str | None) -> Page:
        self._may_capture(principal)
        before = None
        if token is not None:
            position = _decode_token(token, "capture")
            before = (datetime.fromtimestamp(position[0] / 1e6, UTC), uuid.UUID(position[1]))
        async with self._read.connect() as conn:
            jobs = await repo.captures_of_key(conn, principal.key_id, before=before, limit=per_page + 1)
        more = len(jobs) > per_page
        jobs = jobs[:per_page]
        body = {"captureJobs": [await self._job_body(job) for job in jobs]}
        next_token = None
        if more:
            last = jobs[-1]
            next_token = _encode_token([_micros(last.created_at), str(last.id)], "capture")
        return Page(body, next_token)

    # -- query ----------------------------------------------------------------------------------------------

    async def _visible(self, principal: Principal) -> list[str] | None:
        if principal.role == Role.DEPARTMENT:
            raise problems.forbidden("a department key reads the shared feed, not the EPCIS query interface")
        if principal.is_staff:
            return None
        async with self._read.connect() as conn:
            scope = await access.reporting_scope(conn, principal)
        return sorted(scope or {})

    async def query(self, principal: Principal, params: Sequence[tuple[str, str]]) -> Page:
        operators = await self._visible(principal)
        filters, per_page, token, fingerprint = parse_query(params)
        after = None
        if token is not None:
            position = _decode_token(token, fingerprint)
            after = (datetime.fromtimestamp(position[0] / 1e6, UTC), uuid.UUID(position[1]))
        async with self._read.connect() as conn:
            rows = await repo.query_events(conn, filters, operators=operators, after=after, limit=per_page + 1)
        more = len(rows) > per_page
        rows = rows[:per_page]
        body = {
            "@context": union_context([r.context for r in rows]),
            "type": "EPCISQueryDocument",
            "schemaVersion": "2.0",
            "creationDate": _time(datetime.now(UTC)),
            "epcisBody": {
                "queryResults": {
                    "queryName": "SimpleEventQuery",
                    "resultsBody": {"eventList": [served(r) for r in rows]},
                }
            },
        }
        next_token = None
        if more:
            last = rows[-1]
            next_token = _encode_token([_micros(last.record_time), str(last.event_id)], fingerprint)
        return Page(body, next_token)

    async def event(self, principal: Principal, epcis_id: str) -> dict[str, Any]:
        operators = await self._visible(principal)
        async with self._read.connect() as conn:
            stored = await repo.event_by_epcis_id(conn, epcis_id)
        if stored is None or (operators is not None and stored.operator not in operators):
            raise problems.not_found(f"no event {epcis_id}")
        return {"@context": union_context([stored.context]), **served(stored)}


# -- query parameters and page tokens (pure) --------------------------------------------------------------


def _micros(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_MAX_MICROS = _micros(datetime(9999, 1, 1, tzinfo=UTC))


def _encode_token(position: list[Any], fingerprint: str) -> str:
    raw = orjson.dumps([*position, fingerprint])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        micros, event_id, stamp = orjson.loads(raw)
        uuid.UUID(event_id)
        if not isinstance(micros, int) or not 0 <= micros < _MAX_MICROS:
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise problems.bad_query(
            "nextPageToken is not a token this service gave", [{"parameter": "nextPageToken"}]
        ) from None
    if stamp != fingerprint:
        raise problems.bad_query(
            "nextPageToken belongs to a query with other parameters: repeat the same parameters with it",
            [{"parameter": "nextPageToken"}],
        )
    return micros, event_id


def _parse_time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        try:
            return parsed.astimezone(UTC)  # a time near year 1 or 9999 may not exist in UTC
        except OverflowError:
            pass
    raise problems.bad_query(
        f"{name} must be a time with an offset, e.g. 2026-11-25T05:10:00+08:00",
        [{"parameter": name, "value": value}],
    )


def parse_query(params: Sequence[tuple[str, str]]) -> tuple[repo.Filters, int, str | None, str]:
    """The filters of a query, perPage, the token, and the fingerprint of the filters a token is bound to."""
    unknown = sorted({name for name, _ in params if name not in PARAMETERS})
    if unknown:
        raise problems.bad_query(
            f"unknown query parameters: {', '.join(unknown)}", [{"parameter": name} for name in unknown]
        )
    filters = repo.Filters()
    per_page = DEFAULT_PER_PAGE
    token = None
    for name, value in params:
        if name in LIST_PARAMETERS:
            values = [v.strip() for v in value.split(",") if v.strip()]
            if name == "EQ_bizStep":
                values = [s for v in values if (s := biz_step(v))]
            elif name == "EQ_disposition":
                values = [s for v in values if (s := disposition(v))]
            elif name == "EQ_action" and (bad := [v for v in values if v not in ACTIONS]):
                raise problems.bad_query(
                    "EQ_action takes ADD, OBSERVE or DELETE", [{"parameter": name, "value": v} for v in bad]
                )
            getattr(filters, LIST_PARAMETERS[name]).extend(values)
        elif name in TIME_PARAMETERS:
            setattr(filters, TIME_PARAMETERS[name], _parse_time(name, value))
        elif name == "perPage":
            if not value.isdigit() or not 1 <= int(value) <= MAX_PER_PAGE:
                raise problems.bad_query(
                    f"perPage must be a whole number from 1 to {MAX_PER_PAGE}", [{"parameter": name, "value": value}]
                )
            per_page = int(value)
        else:
            token = value
    kept = sorted((n, v) for n, v in params if n not in PAGING)
    fingerprint = hashlib.sha256(orjson.dumps(kept)).hexdigest()[:16]
    return filters, per_page, token, fingerprint
