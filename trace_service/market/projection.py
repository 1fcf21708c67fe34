"""What each event adds to the market figures, as rows to sum. Pure: no I/O.

Every row is a delta that is added to the figures of (reporting operator, product, local day, local hour),
so the figures are sums over the set of applied events, whatever the order they arrive in. A historical
event counts for the day it happened on, in the city's time zone.

The product of a receipt line is the line's own ``product_code`` or else that of its parent lot; the
product of a sale is that of the lot sold. Those lots are looked up in SQL (``lookup`` and ``alt_lookup``
name them), where a row whose product is not known yet waits until it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from trace_service.contract.events import (
    Event,
    RetailSoldEvent,
    SlaughterBatchSlaughteredEvent,
    TradeReceivedEvent,
)
from trace_service.contract.events import EventType as T

LIVE_PIG = "PIG-LIVE"
ZERO = Decimal(0)


@dataclass(frozen=True)
class Contribution:
    event_id: uuid.UUID
    seq: int  # the line of the event, so that one event's rows are told apart
    operator: str
    day: date
    hour: int
    product_code: str | None  # known from the event itself
    lookup: str | None = None  # otherwise the product of this lot ...
    alt_lookup: str | None = None  # ... or of this one
    kg_received: Decimal = ZERO
    kg_sold: Decimal = ZERO
    sales_amount: Decimal = ZERO
    sale_count: int = 0
    head: int = 0


def local_slot(at: datetime, tz: ZoneInfo) -> tuple[date, int]:
    """The local day and hour of a moment."""
    local = at.astimezone(tz)
    return local.date(), local.hour


def _dec(value: float) -> Decimal:
    return Decimal(str(value))


# -- the market effect of each event type (the market column of trace_service/effects.HOMES) ---------------


def trade_received(ev: TradeReceivedEvent, tz: ZoneInfo) -> list[Contribution]:
    day, hour = local_slot(ev.occurred_at, tz)
    return [
        Contribution(
            ev.event_id,
            seq,
            ev.operator,
            day,
            hour,
            line.product_code,
            lookup=line.from_lot,
            alt_lookup=line.lot,  # a received lot inherits its product from upstream
            kg_received=_dec(line.weight_kg),
        )
        for seq, line in enumerate(ev.data.lines)
    ]


def retail_sold(ev: RetailSoldEvent, tz: ZoneInfo) -> list[Contribution]:
    d = ev.data
    day, hour = local_slot(ev.occurred_at, tz)
    kg = _dec(d.weight_kg)
    return [
        Contribution(
            ev.event_id,
            0,
            ev.operator,
            day,
            hour,
            None,
            lookup=d.lot,
            alt_lookup=d.sale_code,
            kg_sold=kg,
            sales_amount=kg * _dec(d.unit_price),
            sale_count=1,
        )
    ]


def slaughter_batch_slaughtered(ev: SlaughterBatchSlaughteredEvent, tz: ZoneInfo) -> list[Contribution]:
    day, hour = local_slot(ev.occurred_at, tz)
    return [Contribution(ev.event_id, 0, ev.operator, day, hour, LIVE_PIG, head=ev.data.head_count)]


# The event types that add to the market figures; the others add nothing.
MARKET: dict[str, Callable[[Any, ZoneInfo], list[Contribution]]] = {
    T.TRADE_RECEIVED: trade_received,
    T.RETAIL_SOLD: retail_sold,
    T.SLAUGHTER_BATCH_SLAUGHTERED: slaughter_batch_slaughtered,
}


def plan(events: Sequence[Event], tz: ZoneInfo) -> list[Contribution]:
    rows: list[Contribution] = []
    for ev in events:
        effect = MARKET.get(ev.event_type)
        if effect is not None:
            rows += effect(ev, tz)
    return rows
