"""The bodies intake answers with: accepted events, their statuses, and the dead letters.

They describe in the OpenAPI document what ``ingest/service.py`` builds; the service does not use them
(``tests/test_openapi.py`` validates real answers against their schemas).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trace_service.alerts.models import Alert

_EVENT_ID = "a74950ea-b446-4356-b9f0-1188ccbdecd6"
_OTHER_ID = "985a0e7c-57ba-4037-b596-fd4dc54ae000"


class EventStatus(BaseModel):
    """Where one event stands (``GET /v1/events/{event_id}``, and each item of a ``?wait=true`` answer)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"event_id": _EVENT_ID, "status": "applied", "alerts": []},
                {"event_id": _OTHER_ID, "status": "accepted", "waiting_for": ["ST2026112500012"], "alerts": []},
                {
                    "event_id": _OTHER_ID,
                    "status": "rejected",
                    "reason": "not_holder",
                    "message": "lot ST2026112500012 is held by an operator the sender does not report for",
                    "alerts": [],
                },
            ]
        }
    )

    event_id: str
    status: Literal["accepted", "applied", "rejected"]
    reason: str | None = Field(default=None, description="rejected: the dead-letter code")
    message: str | None = Field(default=None, description="rejected: the explanation")
    waiting_for: list[str] | None = Field(
        default=None, description="accepted and held until these lot codes get a holder (contract section 7)"
    )
    alerts: list[Alert] = Field(description="the alerts this event raised or added evidence to")


class EventsAccepted(BaseModel):
    """202: the broker acknowledged every event; they are applied shortly."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": [_EVENT_ID, _OTHER_ID]}]})

    accepted: list[str] = Field(description="the event ids in request order, repeats collapsed")


class EventsWaited(EventsAccepted):
    """``?wait=true``: 200 when every event was applied or rejected in time, else 202 with ``complete``
    false and the statuses at that moment."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": [_EVENT_ID],
                    "complete": True,
                    "events": [{"event_id": _EVENT_ID, "status": "applied", "alerts": []}],
                }
            ]
        }
    )

    complete: bool
    events: list[EventStatus]


class DeadLetter(BaseModel):
    id: int
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="the Kafka key as text (invalid UTF-8 replaced)")
    error_code: str = Field(examples=["invalid_event"])
    error_message: str
    details: list[Any] = Field(description="for invalid_event, the same shape as the API's 422 details")
    event_id: str | None = Field(description="when it could be read from the message (and was not a claim)")
    operator: str | None
    recorded_at: str
    raw: str = Field(description="the original bytes, as text or base64 (see raw_encoding)")
    raw_encoding: Literal["utf-8", "base64"]


class DeadLetterPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 812,
                            "topic": "trace.events.v1",
                            "partition": 2,
                            "offset": 40311,
                            "key": "442000600012",
                            "error_code": "invalid_event",
                            "error_message": "the event is not valid",
                            "details": [
                                {
                                    "field": "data.weight_kg",
                                    "type": "greater_than",
                                    "message": "Input should be greater than 0",
                                }
                            ],
                            "event_id": _OTHER_ID,
                            "operator": "442000600012",
                            "recorded_at": "2026-11-25T08:47:13.004000+08:00",
                            "raw": '{"event_id": "985a0e7c-57ba-4037-b596-fd4dc54ae000", "...": "..."}',
                            "raw_encoding": "utf-8",
                        }
                    ],
                    "next_cursor": "812",
                }
            ]
        }
    )

    items: list[DeadLetter] = Field(description="newest first")
    next_cursor: str | None
