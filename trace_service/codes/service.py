"""Use cases of issued lot codes: issue a batch to an operator, find whose an issued code is, and refuse
events naming a malformed code under an issuer's prefix.

An issued code reads ``<issuer-seq 6><yyMMdd 6><serial 7><check 1>`` (contract section 1): the
operator's issuer sequence (assigned the first time it asks), the issue date in Asia/Shanghai, a
per-(operator, day) serial and a GS1 mod-10 check digit over the first 19 digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access.models import Principal, Role
from trace_service.access.service import require
from trace_service.codes import repository as repo
from trace_service.contract.codes import (
    ISSUED_SERIAL_MAX,
    ISSUER_SEQ_MAX,
    format_issued_code,
    parse_issued_code,
)
from trace_service.contract.events import Envelope, issued_code_suspects
from trace_service.errors import Conflict, Forbidden, InvalidInput

MAX_CODES_PER_REQUEST = 1000

# China Standard Time: UTC+8 all year (no daylight saving since 1991), the clock of Asia/Shanghai.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def shanghai_today(now: datetime | None = None) -> date:
    """The calendar date in Asia/Shanghai at ``now`` (default: the current time)."""
    return (now or datetime.now(UTC)).astimezone(SHANGHAI).date()


@dataclass(frozen=True)
class IssuedCodes:
    operator: str
    codes: list[str]


async def issue_codes(
    conn: AsyncConnection, principal: Principal, count: int, *, today: date | None = None
) -> IssuedCodes:
    """Reserve ``count`` fresh codes to the principal's operator (operator keys only)."""
    require(principal, Role.OPERATOR)
    operator = principal.operator
    if operator is None:  # pragma: no cover - an operator key always has an operator
        raise Forbidden("this key is bound to no operator")
    if not 1 <= count <= MAX_CODES_PER_REQUEST:
        raise InvalidInput(
            "the request is not valid",
            details=[{"field": "count", "message": f"count must be between 1 and {MAX_CODES_PER_REQUEST}"}],
        )
    block = await repo.allocate(conn, operator, today or shanghai_today(), count, principal.key_id)
    # Raising rolls the request's transaction back, so nothing is reserved.
    if block.seq > ISSUER_SEQ_MAX:
        raise Conflict(
            f"no issuer sequence is left (the 6-digit space holds {ISSUER_SEQ_MAX} operators)",
            code="code_space_exhausted",
        )
    last = block.first_serial + block.count - 1
    if last > ISSUED_SERIAL_MAX:
        raise Conflict(
            f"operator {operator} has used up today's {ISSUED_SERIAL_MAX} codes; ask again tomorrow",
            code="code_quota_exhausted",
        )
    codes = [format_issued_code(block.seq, block.day, s) for s in range(block.first_serial, last + 1)]
    return IssuedCodes(operator=operator, codes=codes)


async def owner_of_code(conn: AsyncConnection, code: str) -> str | None:
    """The operator an issued code is reserved to; None when the code was not issued here."""
    parsed = parse_issued_code(code)
    if parsed is None:
        return None
    return await repo.block_owner(conn, parsed.issuer_seq, parsed.day, parsed.serial)


async def misissued_codes(conn: AsyncConnection, events: Sequence[Envelope]) -> dict[int, list[dict[str, Any]]]:
    """The lot codes of these events that carry the prefix of an issuer of this service without being
    well-formed issued codes (contract section 1), as ``details`` by the event's position.

    The API (422) and the worker (dead letter ``invalid_event``) call this after the contract's validation,
    so both decide alike. Only 20-digit codes that fail the issued-code check need the database, and they
    take one query for the whole batch; another system's 20-digit code passes when its first 6 digits are
    no issuer's sequence.
    """
    suspects = issued_code_suspects(events)
    if not suspects:
        return {}
    known = await repo.issuers(conn, {s.issuer_seq for s in suspects})
    found: dict[int, list[dict[str, Any]]] = {}
    for s in suspects:
        if s.issuer_seq in known:
            found.setdefault(s.index, []).append(
                {"field": s.field, "type": "issued_code_invalid", "message": s.problem}
            )
    return found
