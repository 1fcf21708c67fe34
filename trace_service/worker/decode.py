"""Turning Kafka records into validated events or dead letters. Pure: no I/O."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from trace_service.contract.events import (
    Catalogue,
    Event,
    canonical_bytes,
    describe_errors,
    fingerprint,
    in_future,
    unstorable_strings,
)
from trace_service.contract.signing import Claim


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Actor:
    """Who sent a message, as authenticated by :mod:`trace_service.worker.authn` (contract section 8).

    ``staff``: a regulator or admin key (through the API), which may name any lot. Otherwise ``roots`` are
    the operators the sender may report for; the operators registered under them are in its scope too.
    """

    kind: str  # "api" (produced by the API for a key) | "integrator" (a registered direct producer)
    key_id: str
    staff: bool
    roots: tuple[str, ...]


@dataclass
class Decoded:
    position: Position
    event: Event
    canonical: bytes
    sha256: bytes
    source: str
    key: bytes | None
    raw: bytes
    headers: list[tuple[str, bytes]]
    actor: Actor | None = None  # set by authn.authenticate before anything is applied
    # Read by authn.ApiMark before the batch's transaction (no I/O): the headers' claim, and whether the API's own
    # HMAC over this key and value was verified with this worker's secret. authn.authenticate trusts nothing else.
    claim: Claim | str | None = None
    api_verified: bool = False


@dataclass
class Dead:
    position: Position
    key: bytes | None
    raw: bytes
    code: str
    message: str
    details: list[Any] = field(default_factory=list)
    event_id: uuid.UUID | None = None
    operator: str | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _salvage(raw: bytes) -> tuple[uuid.UUID | None, str | None]:
    """The event_id and operator of an invalid message, when they can be read, so status can be shown."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    event_id = None
    with contextlib.suppress(ValueError):
        event_id = uuid.UUID(str(obj.get("event_id")))
    operator = obj.get("operator")
    return event_id, operator if isinstance(operator, str) and len(operator) <= 64 else None


def decode(
    catalogue: Catalogue,
    position: Position,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    *,
    now: datetime,
    future_skew_seconds: int,
) -> Decoded | Dead:
    raw = value or b""
    try:
        event = catalogue.event.validate_json(raw)
    except ValidationError as exc:
        details = describe_errors(exc, batch=False)
        malformed = any(d["type"] == "json_invalid" for d in details)
        if malformed and (unstorable := unstorable_strings(raw, batch=False)):
            details, malformed = unstorable, False
        event_id, operator = _salvage(raw)
        return Dead(
            position=position,
            key=key,
            raw=raw,
            code="malformed_json" if malformed else "invalid_event",
            message="the message is not valid JSON" if malformed else "the event does not match the contract",
            details=details[:50],
            event_id=event_id,
            operator=operator,
            headers=list(headers or []),
        )
    if in_future(event, now=now, skew_seconds=future_skew_seconds):
        return Dead(
            position=position,
            key=key,
            raw=raw,
            code="invalid_event",
            message=f"occurred_at lies more than {future_skew_seconds} s in the future",
            details=[{"field": "occurred_at", "type": "in_future"}],
            event_id=event.event_id,
            operator=event.operator,
            headers=list(headers or []),
        )
    canonical = canonical_bytes(event)
    return Decoded(
        position=position,
        event=event,
        canonical=canonical,
        sha256=fingerprint(canonical),
        source="kafka",  # authn.authenticate makes it "api" for a valid signature of the API, never a header alone
        key=key,
        raw=raw,
        headers=list(headers or []),
    )


def refused(
    item: Decoded, code: str, message: str, details: list[Any] | None = None, *, identified: bool = True
) -> Dead:
    """The dead letter of a decoded message. ``identified``: it speaks for its event id and operator (their
    status, their ledger row); a message not shown to be its sender's must not."""
    return Dead(
        position=item.position,
        key=item.key,
        raw=item.raw,
        code=code,
        message=message,
        details=details or [],
        event_id=item.event.event_id if identified else None,
        operator=item.event.operator if identified else None,
        headers=item.headers,
    )


def conflicting(item: Decoded) -> Dead:
    return refused(item, "conflicting_duplicate", "this event_id is known with different content")


def unapplicable(
    position: Position, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]], reason: str
) -> Dead:
    """A valid-looking message that the store refused even on its own (the batch was split to find it)."""
    raw = value or b""
    event_id, operator = _salvage(raw)
    return Dead(
        position=position,
        key=key,
        raw=raw,
        code="unapplicable",
        message=f"the event could not be applied: {reason}",
        event_id=event_id,
        operator=operator,
        headers=headers,
    )
