"""Bodies of the subscription endpoints (contract section 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Kind = Literal["event", "alert", "market"]
Status = Literal["active", "paused", "ended"]
EventPattern = Annotated[str, StringConstraints(min_length=1, max_length=64)]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z_]{3,40}$")]
RegionCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]

_CREATED_EXAMPLE: dict[str, Any] = {
    "id": "sub_k3v9q2m7x8p4t6wa",
    "secret": "whsec_MfKQ9r8GKYqrTuPrqZtf6mRzcPYNzN0ZRYd2mtqhYCU=",
    "url": "https://trace.amr.zs.gov.cn/hooks/trace",
    "status": "active",
    "kinds": ["event", "alert"],
    "event_types": ["lot.tested"],
    "rules": None,
    "regions": ["442000"],
    "allow_private": False,
    "cursor": 1200,
    "head": 1200,
    "lag": 0,
    "last_error": None,
    "last_error_at": None,
    "failing_since": None,
    "next_attempt_at": None,
    "last_success_at": None,
    "paused_at": None,
    "created_by": "k7hq2dz9wm3c",
    "created_at": "2026-11-25T09:00:00+08:00",
    "ended_at": None,
}
_OUT_EXAMPLE: dict[str, Any] = {k: v for k, v in _CREATED_EXAMPLE.items() if k != "secret"} | {
    "cursor": 1812,
    "head": 2050,
    "lag": 238,
    "last_error": "HTTP 503",
    "last_error_at": "2026-11-25T10:41:07+08:00",
    "failing_since": "2026-11-25T10:40:02+08:00",
    "next_attempt_at": "2026-11-25T10:42:11+08:00",
    "last_success_at": "2026-11-25T10:39:58+08:00",
}


class SubscriptionIn(BaseModel):
    """A new subscription. Leave a filter out to get everything the key's scopes allow."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://trace.amr.zs.gov.cn/hooks/trace",
                    "kinds": ["event", "alert"],
                    "event_types": ["lot.tested"],
                    "regions": ["442000"],
                }
            ]
        },
    )

    url: Annotated[
        str,
        Field(
            max_length=2000,
            description="http(s) URL the batches are POSTed to; no credentials, no loopback or link-local address",
        ),
    ]
    kinds: Annotated[list[Kind] | None, Field(min_length=1, max_length=3, description="event, alert, market")] = None
    event_types: Annotated[
        list[EventPattern] | None,
        Field(min_length=1, max_length=64, description="event types or families (lot.tested, farm.*)"),
    ] = None
    rules: Annotated[list[RuleName] | None, Field(min_length=1, max_length=100, description="alert rules")] = None
    regions: Annotated[
        list[RegionCode] | None,
        Field(
            min_length=1,
            max_length=200,
            description="GB/T 2260 codes; a province (440000) or prefecture (442000) covers the codes under it",
        ),
    ] = None
    after: Annotated[
        int | None,
        Field(ge=0, description="deliver the items after this seq (0: the whole stream); default: the head now"),
    ] = None
    allow_private: Annotated[
        bool, Field(description="admin keys only: allow an address the URL rules refuse (a receiver on loopback)")
    ] = False


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_OUT_EXAMPLE]})

    id: str
    url: str
    status: Status
    kinds: list[str] | None
    event_types: list[str] | None
    rules: list[str] | None
    regions: list[str] | None
    allow_private: bool
    cursor: int = Field(description="the last seq the receiver acknowledged (2xx)")
    head: int = Field(description="the last seq of the stream")
    lag: int = Field(description="head - cursor: stream positions not yet delivered (items outside the filters count)")
    last_error: str | None
    last_error_at: datetime | None
    failing_since: datetime | None = Field(description="when the current run of failures began")
    next_attempt_at: datetime | None = Field(description="when the failed batch is tried again")
    last_success_at: datetime | None
    paused_at: datetime | None
    created_by: str = Field(description="the key id that created it; its scopes bound what is delivered")
    created_at: datetime
    ended_at: datetime | None


class SubscriptionCreated(SubscriptionOut):
    model_config = ConfigDict(json_schema_extra={"examples": [_CREATED_EXAMPLE]})

    secret: str = Field(
        description="Standard Webhooks secret (whsec_<base64>) to verify signatures with. Shown once; the service "
        "keeps only a salt from which, with its master secret, it recomputes it."
    )


class SubscriptionList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_OUT_EXAMPLE]}]})

    items: list[SubscriptionOut]


_DELIVERY_EXAMPLE: dict[str, Any] = {
    "delivery_id": "msg_8d2kq7x3m9p4t6wahc5e2nrb",
    "first_seq": 1813,
    "last_seq": 1840,
    "until": 1840,
    "items": 21,
    "status_code": 503,
    "error": "HTTP 503",
    "duration_ms": 41,
    "deliverer": "node-a:2214:q3",
    "at": "2026-11-25T10:41:07+08:00",
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    delivery_id: str = Field(description="the batch's webhook-id, the same on each retry of the batch")
    first_seq: int | None = Field(description="seq of the batch's first item")
    last_seq: int | None = Field(description="seq of the batch's last item")
    until: int = Field(description="the cursor after the batch, once acknowledged")
    items: int
    status_code: int | None = Field(description="the receiver's status; null when it did not answer")
    error: str | None
    duration_ms: int
    deliverer: str = Field(description="the deliver process that made the attempt")
    at: datetime


class DeliveryList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_DELIVERY_EXAMPLE]}]})

    items: list[DeliveryOut]


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"after": 1200}]})

    after: Annotated[int, Field(ge=0, description="deliver again every item after this seq")]
