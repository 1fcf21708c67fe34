"""Who may change a lot (contract section 7). Pure: no I/O.

A lot's holder is the operator whose event created it. An event that records a fact about a lot or moves
quantity out of it counts only when the sender may report for the lot's holder (a key reports for its
operator and the operators registered under it; so a market's key may test, and its tenants' keys
may not touch, each other's lots). ``regulator.*`` events may name any lot. A creating event for a code
that another operator holds (or that the service issued to another operator) is refused.

The same functions decide at the API (where the holders are already known: 403 ``not_holder``, 409
``lot_taken``) and in the worker (in any arrival order: an event about a lot whose holder is not known
yet waits for the lot's creating event; see :mod:`trace_service.worker.service`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import assert_never

from trace_service.contract.events import (
    ColdstoreReleasedEvent,
    ColdstoreStoredInEvent,
    EpcisEventEvent,
    Event,
    FarmPigsDispatchedEvent,
    ImportCustomsClearedEvent,
    ImportDocumentsSuppliedEvent,
    LotDisposedEvent,
    LotTemperatureRecordedEvent,
    LotTestedEvent,
    ProduceHarvestedEvent,
    RegulatorLotHeldEvent,
    RegulatorLotReleasedEvent,
    RetailSoldEvent,
    SlaughterAsfTestedEvent,
    SlaughterBatchSlaughteredEvent,
    SlaughterPigsReceivedEvent,
    TradeReceivedEvent,
    TradeShippedEvent,
    epcis_effects,
)


@dataclass(frozen=True)
class Claim:
    """One lot an event speaks about: the field that names it, and whether the event creates it."""

    code: str
    field: str
    creates: bool
    # An EPCIS event about a lot another operator holds may be one whose shipping to this sender (a custody
    # fact) is still on its way: it waits for that instead of being refused (docs/epcis.md, "Custody").
    waits_for_custody: bool = False


def claims(event: Event) -> list[Claim]:
    """The lots an event creates, and those it records a fact about or moves quantity out of.

    References that are only links (a buyer's ``from_lot``, a slaughter intake's ``from_lot``) are not here:
    they change nothing of the other operator's lot (see ``edges.pending``).
    """
    match event:
        case FarmPigsDispatchedEvent(data=d) | SlaughterPigsReceivedEvent(data=d) | ProduceHarvestedEvent(data=d):
            return [Claim(d.lot, "data.lot", True)]
        case SlaughterBatchSlaughteredEvent(data=d):
            return [Claim(d.lot, "data.lot", False)] + [
                Claim(o.lot, f"data.outputs.{i}.lot", True) for i, o in enumerate(d.outputs)
            ]
        case TradeReceivedEvent(data=d):
            return [Claim(line.lot, f"data.lines.{i}.lot", True) for i, line in enumerate(d.lines)]
        case TradeShippedEvent(data=d):
            return [Claim(ship.lot, f"data.lines.{i}.lot", False) for i, ship in enumerate(d.lines)]
        case RetailSoldEvent(data=d):
            return [Claim(d.lot, "data.lot", False), Claim(d.sale_code, "data.sale_code", True)]
        case SlaughterAsfTestedEvent(data=d) | LotTestedEvent(data=d) | LotDisposedEvent(data=d):
            return [Claim(d.lot, "data.lot", False)]
        # -- cold chain (issue 14): the importer creates the lot; its holder records documents, moves, readings --
        case ImportCustomsClearedEvent(data=d):
            return [Claim(d.lot, "data.lot", True)]
        case (
            ImportDocumentsSuppliedEvent(data=d)
            | ColdstoreStoredInEvent(data=d)
            | ColdstoreReleasedEvent(data=d)
            | LotTemperatureRecordedEvent(data=d)
        ):
            return [Claim(d.lot, "data.lot", False)]
        case EpcisEventEvent(data=d):
            effects = epcis_effects(d)
            created = {c.code for c in effects.creates}
            return [Claim(c, "data.event", True) for c in sorted(created)] + [
                Claim(c, "data.event", False, waits_for_custody=True) for c in effects.lots_named if c not in created
            ]
        case RegulatorLotHeldEvent() | RegulatorLotReleasedEvent():
            return []  # regulator.* may name any lot
    assert_never(event)


def custody_passes(event: Event) -> list[tuple[str, str]]:
    """(lot, new holder) for every lot an event hands on to another operator (EPCIS shipping, docs/epcis.md)."""
    if not isinstance(event, EpcisEventEvent):
        return []
    return [(c.lot, c.holder) for c in epcis_effects(event.data).custody]


def codes_of(events: Iterable[Event]) -> set[str]:
    return {c.code for ev in events for c in claims(ev)}


@dataclass(frozen=True)
class Refusal:
    code: str  # not_holder | lot_taken
    lot: str
    field: str
    holder: str
    message: str


@dataclass
class Verdict:
    """What to do with one event: apply it, refuse it (with the first refusal), or wait for these lots."""

    refusal: Refusal | None = None
    waits_for: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.refusal is None and not self.waits_for


def judge(
    event: Event,
    holders: Mapping[str, str | None],
    may_report_for: Callable[[str], bool],
    *,
    staff: bool,
) -> Verdict:
    """Decide one event against the lots' holders.

    ``holders``: code → holder for every code known to have one (issued codes map to the operator they were
    issued to); a code absent or mapped to None has no holder yet. ``may_report_for(holder)``: may the
    sender report for that operator.
    """
    verdict = Verdict()
    if staff or event.event_type.startswith("regulator."):
        return verdict
    creator: str = event.operator
    for claim in claims(event):
        holder = holders.get(claim.code)
        if claim.creates:
            if holder is not None and holder != creator:
                verdict.refusal = Refusal(
                    "lot_taken",
                    claim.code,
                    claim.field,
                    holder,
                    f"lot {claim.code} is held by another operator; choose another code",
                )
                return verdict
        elif holder is None or (not may_report_for(holder) and claim.waits_for_custody):
            verdict.waits_for.append(claim.code)
        elif not may_report_for(holder):
            verdict.refusal = Refusal(
                "not_holder",
                claim.code,
                claim.field,
                holder,
                f"lot {claim.code} is not held by {creator} or an operator this sender reports for",
            )
            return verdict
    return verdict


def in_scope(holder: str, roots: Iterable[str], ancestors: Mapping[str, Collection[str]]) -> bool:
    """Is ``holder`` one of ``roots`` or registered (directly or further down) under one of them.

    ``ancestors``: each operator with itself and the operators above it (``access.repository.ancestry``).
    """
    chain = ancestors.get(holder) or (holder,)
    return any(root in chain for root in roots)


def issued_parts(code: str) -> tuple[int, date, int] | None:
    """(issuer sequence, day, serial) of a code in the issued form ``<seq 6><yyMMdd 6><serial 7><check 1>``."""
    if len(code) != 20 or not code.isdigit():
        return None
    try:
        day = date(2000 + int(code[6:8]), int(code[8:10]), int(code[10:12]))
    except ValueError:
        return None
    return int(code[:6]), day, int(code[12:19])
