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
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

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


def plan(events: list[BaseModel], tz: ZoneInfo) -> list[Contribution]:
    rows: list[Contribution] = []
    for ev in events:
        et: str = ev.event_type  # type: ignore[attr-defined]
        d: Any = ev.data  # type: ignore[attr-defined]
        eid: uuid.UUID = ev.event_id  # type: ignore[attr-defined]
        op: str = ev.operator  # type: ignore[attr-defined]
        day, hour = local_slot(ev.occurred_at, tz)  # type: ignore[attr-defined]

        if et == T.TRADE_RECEIVED:
            for seq, line in enumerate(d.lines):
                rows.append(
                    Contribution(
                        eid,
                        seq,
                        op,
                        day,
                        hour,
                        line.product_code,
                        lookup=line.from_lot,
                        alt_lookup=line.lot,  # a received lot inherits its product from upstream
                        kg_received=_dec(line.weight_kg),
                    )
                )
        elif et == T.RETAIL_SOLD:
            kg = _dec(d.weight_kg)
            rows.append(
                Contribution(
                    eid,
                    0,
                    op,
                    day,
                    hour,
                    None,
                    lookup=d.lot,
                    alt_lookup=d.sale_code,
                    kg_sold=kg,
                    sales_amount=kg * _dec(d.unit_price),
                    sale_count=1,
                )
            )
        elif et == T.SLAUGHTER_BATCH_SLAUGHTERED:
            rows.append(Contribution(eid, 0, op, day, hour, LIVE_PIG, head=d.head_count))
    return rows
