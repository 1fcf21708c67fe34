"""One home per event type: what each event type does, in one table.

``HOMES`` maps every event type of the contract to its graph effect (``chain/projection.py``: the rows it adds to
the trace graph), its market effect (``market/projection.py``: the rows it adds to the daily figures, or none)
and the rule families whose facts it feeds (what ``alerts/engine.judge_batch`` gathers because of it; declared
here: the profile of a city day found every family fed by nearly every batch, so nothing is skipped on them yet).
The worker builds a batch's graph rows through the graph column (:func:`graph_plan`); ``grep TradeReceived`` shows
everything that type does.

The graph and market columns are the dispatch tables of their own modules (``projection.GRAPH``,
``market.projection.MARKET``, which the API-side code and the tests reach without this layer); the check at the
bottom keeps the three in agreement, so a new event type cannot get a home in one and be missed in another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from trace_service.chain import projection as graph
from trace_service.chain.projection import Plan
from trace_service.contract.events import MODELS, Event
from trace_service.contract.events import EventType as T
from trace_service.market import projection as market
from trace_service.market.projection import Contribution


class Family(StrEnum):
    """The rule families of ``alerts/engine.judge_batch``, by the facts they gather."""

    EAR_TAGS = "ear_tags"  # ear_tag_reused
    CERTIFICATES = "certificates"  # certificate rules, head counts
    BATCHES = "batches"  # batch rules (slaughter yield, dead on arrival...)
    CARCASS_RELEASE = "carcass_release"  # shipments out of carcass lots wait for ASF results
    STOPS = "stops"  # positive ASF, failed tests
    STOPPED_TRADE = "stopped_trade"  # a trade after a stop
    LOTS = "lots"  # lot rules, mass balance
    VOUCHERS = "vouchers"  # shipment_mismatch
    COLD_CHAIN = "cold_chain"  # cold_chain_break
    IMPORT_DOCS = "import_docs"  # import_docs_missing


@dataclass(frozen=True)
class Home:
    """What one event type does."""

    graph: Callable[[Plan, Any], None]
    market: Callable[[Any, ZoneInfo], list[Contribution]] | None
    families: frozenset[Family]


F = Family
_EVERY_LOT = frozenset({F.STOPPED_TRADE, F.LOTS})  # any event that touches a lot

HOMES: dict[str, Home] = {
    T.FARM_PIGS_DISPATCHED: Home(graph.farm_pigs_dispatched, None, _EVERY_LOT | {F.EAR_TAGS, F.CERTIFICATES}),
    T.SLAUGHTER_PIGS_RECEIVED: Home(
        graph.slaughter_pigs_received, None, _EVERY_LOT | {F.EAR_TAGS, F.CERTIFICATES, F.BATCHES, F.COLD_CHAIN}
    ),
    T.SLAUGHTER_ASF_TESTED: Home(graph.slaughter_asf_tested, None, _EVERY_LOT | {F.STOPS, F.CARCASS_RELEASE}),
    T.SLAUGHTER_BATCH_SLAUGHTERED: Home(
        graph.slaughter_batch_slaughtered,
        market.slaughter_batch_slaughtered,
        _EVERY_LOT | {F.BATCHES, F.CARCASS_RELEASE, F.COLD_CHAIN},
    ),
    T.PRODUCE_HARVESTED: Home(graph.produce_harvested, None, _EVERY_LOT),
    T.TRADE_SHIPPED: Home(graph.trade_shipped, None, _EVERY_LOT | {F.CARCASS_RELEASE, F.VOUCHERS, F.IMPORT_DOCS}),
    T.TRADE_RECEIVED: Home(
        graph.trade_received,
        market.trade_received,
        _EVERY_LOT | {F.CARCASS_RELEASE, F.VOUCHERS, F.COLD_CHAIN},
    ),
    T.LOT_TESTED: Home(graph.lot_tested, None, _EVERY_LOT | {F.STOPS}),
    T.RETAIL_SOLD: Home(graph.retail_sold, market.retail_sold, _EVERY_LOT | {F.COLD_CHAIN, F.IMPORT_DOCS}),
    T.LOT_DISPOSED: Home(graph.lot_disposed, None, _EVERY_LOT),
    T.REGULATOR_LOT_HELD: Home(graph.regulator_lot_held, None, _EVERY_LOT),
    T.REGULATOR_LOT_RELEASED: Home(graph.regulator_lot_released, None, _EVERY_LOT),
    # -- cold chain (issue 14) --
    T.IMPORT_CUSTOMS_CLEARED: Home(graph.import_customs_cleared, None, _EVERY_LOT | {F.COLD_CHAIN, F.IMPORT_DOCS}),
    T.IMPORT_DOCUMENTS_SUPPLIED: Home(graph.import_documents_supplied, None, _EVERY_LOT | {F.IMPORT_DOCS}),
    T.COLDSTORE_STORED_IN: Home(graph.coldstore_stored_in, None, _EVERY_LOT),
    T.COLDSTORE_RELEASED: Home(graph.coldstore_released, None, _EVERY_LOT),
    T.LOT_TEMPERATURE_RECORDED: Home(graph.lot_temperature_recorded, None, _EVERY_LOT | {F.COLD_CHAIN}),
    # An EPCIS event may do what any of the others do (docs/epcis.md): every family.
    T.EPCIS_EVENT: Home(graph.epcis_event, None, frozenset(Family)),
}


def graph_plan(events: Iterable[Event]) -> Plan:
    """The rows the trace graph gains from a batch: each event's graph effect from its home, in batch order
    (what ``projection.plan`` does through the same functions)."""
    p = Plan()
    for ev in events:
        HOMES[ev.event_type].graph(p, ev)
    return p


def families_of(events: Iterable[Event]) -> frozenset[Family]:
    """The rule families a batch of these events feeds."""
    found: set[Family] = set()
    for ev in events:
        found |= HOMES[ev.event_type].families
    return frozenset(found)


def _check() -> None:
    if set(HOMES) != set(MODELS):
        raise RuntimeError(f"event types without a home: {sorted(set(MODELS) ^ set(HOMES))}")
    for event_type, home in HOMES.items():
        if graph.GRAPH[event_type] is not home.graph or market.MARKET.get(event_type) is not home.market:
            raise RuntimeError(f"the effects of {event_type} disagree with projection.GRAPH / market.MARKET")


_check()
