"""Bodies of the sharing endpoints: the feed page, its items and the audit (contract section 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_EVENT_ITEM: dict[str, Any] = {
    "seq": 1002,
    "kind": "event",
    "item": {
        "event_id": "7f0c1c5e-6a6b-4a8e-9a51-0d1b0f3a9b11",
        "event_type": "lot.tested",
        "occurred_at": "2026-11-25T03:40:00+08:00",
        "operator": "442000300001",
        "data": {"lot": "VG20261125000001", "test": "pesticide_rapid", "method": "enzyme inhibition", "value": 12.5,
                 "result": "pass"},
        "recorded_at": "2026-11-25T03:40:01.204+08:00",
        "source": "api",
    },
}  # fmt: skip
_MARKET_ITEM: dict[str, Any] = {
    "seq": 1003,
    "kind": "market",
    "item": {
        "day": "2026-11-25",
        "market": "442000300000",
        "region": "442000",
        "product_code": "VEG-CHOYSUM",
        "kg_received": 1250.5,
        "kg_sold": 310.2,
        "head": 0,
        "avg_price": 6.8,
    },
}


class FeedItem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_ITEM, _MARKET_ITEM]})

    seq: int = Field(description="position on the shared stream; increases along the whole stream", examples=[1002])
    kind: Literal["event", "alert", "market"]
    item: dict[str, Any] = Field(
        description="event: the envelope as stored plus `recorded_at` and `source` (without personal data unless "
        "the key has `personal`; a redacted envelope lists what was removed in `redacted`); alert: the alert as "
        "`GET /v1/alerts` serves it; market: one market's figures of a product and day as they stand now"
    )


class FeedPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_EVENT_ITEM, _MARKET_ITEM], "next": 1003}]})

    items: list[FeedItem]
    next: int = Field(
        description="the `after` of the next request: the last seq scanned (which may be past the last item "
        "returned when the key's scopes skip items); equal to `after` when nothing new was committed",
        examples=[1003],
    )


_AUDIT_ENTRY: dict[str, Any] = {
    "id": 88,
    "actor": "k_3f9a1c2b7d",
    "role": "department",
    "action": "feed",
    "subject": "/v1/feed",
    "count": 1000,
    "first_seq": 1002,
    "last_seq": 2101,
    "detail": {"after": 1001, "next": 2101},
    "at": "2026-11-25T03:41:00+08:00",
}


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_AUDIT_ENTRY]})

    id: int
    actor: str = Field(description="the key id (or `admin-token`, or a deliverer for deliveries)")
    role: str
    action: str = Field(description="`feed`, `export`, `read` or `delivery`", examples=["feed"])
    subject: str = Field(description="the path read, or the subscription id delivered to")
    count: int = Field(description="items (or events, for an export) sent")
    first_seq: int | None
    last_seq: int | None
    detail: dict[str, Any]
    at: datetime


class AuditPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_AUDIT_ENTRY], "next_cursor": "ODg"}]})

    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for older entries; null on the last page")
