"""Findings and alerts. Pure: no I/O.

A rule returns :class:`Finding` values. A finding names its rule and subject; the alert id is derived
from exactly those, so the same finding found again is the same alert, updated with new evidence.
:class:`Alert` and :class:`AlertPage` describe an alert as the API serves it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Level(StrEnum):
    """Emergency levels of the city plans for market alerts: IV is the mildest, I the gravest."""

    IV = "IV"
    III = "III"
    II = "II"
    I = "I"  # noqa: E741 - the level's name


LEVEL_ORDER = {Level.IV: 1, Level.III: 2, Level.II: 3, Level.I: 4}


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Finding:
    rule: str
    subject_type: str  # lot | operator | market | product | certificate | ear_tag | voucher
    subject_code: str
    severity: Severity
    message_zh: str
    message_en: str
    level: Level | None = None
    operator: str | None = None  # the operator concerned, for filtering and scoping
    evidence: dict[str, Any] = field(default_factory=dict)
    event_ids: tuple[uuid.UUID, ...] = ()

    @property
    def alert_id(self) -> str:
        return alert_id(self.rule, self.subject_type, self.subject_code)


def alert_id(rule: str, subject_type: str, subject_code: str) -> str:
    """Deterministic: the same rule about the same subject is always the same alert."""
    digest = hashlib.sha256(f"{rule}\x1f{subject_type}\x1f{subject_code}".encode()).hexdigest()
    return f"al_{digest[:24]}"


# -- the alert as the API serves it (GET /v1/alerts, the stream, trace.alerts.v1) ------------------------
# Rendered by Postgres (``repository.ALERT_JSON``); these models describe that JSON in the OpenAPI
# document, and tests/test_openapi.py validates real answers against them.

_ALERT_EXAMPLE: dict[str, Any] = {
    "id": "al_3f9c0a4b1d2e5f60718293a4",
    "rule": "asf_positive",
    "severity": "critical",
    "level": None,
    "subject": {"type": "lot", "code": "SB2026112500001"},
    "operator": "442000100001",
    "message": {
        "zh": "屠宰批次 SB2026112500001 非洲猪瘟检测阳性，批次及其下游已暂停销售",
        "en": "Slaughter batch SB2026112500001 tested ASF positive; it and everything downstream are stopped",
    },
    "evidence": {"event_ids": ["af98ed08-a992-47ad-9afb-294754649c8d"], "method": "pcr"},
    "status": "acknowledged",
    "version": 1,
    "created_at": "2026-11-25T04:05:03.120000+08:00",
    "updated_at": "2026-11-25T04:20:41.530000+08:00",
    "acknowledged": {"by": "k7Qm2xY9pLw3", "at": "2026-11-25T04:20:41.530000+08:00", "note": "已通知屠宰厂封存"},
    "resolved": None,
}


class AlertSubject(BaseModel):
    type: str = Field(description="lot, operator, market, product, certificate, ear_tag or voucher")
    code: str


class AlertMessage(BaseModel):
    zh: str
    en: str


class AlertAction(BaseModel):
    """Who acknowledged or resolved the alert (a key id, or ``system``), when, and the note."""

    by: str | None
    at: str
    note: str | None


class Alert(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT_EXAMPLE]})

    id: str = Field(description="deterministic from rule and subject: the same finding is one alert")
    rule: str
    severity: Severity
    level: Level | None = Field(description="for market alerts: the emergency level, IV (mildest) to I")
    subject: AlertSubject
    operator: str | None = Field(description="the operator concerned")
    message: AlertMessage
    evidence: dict[str, Any] = Field(description="event ids and figures behind the finding")
    status: AlertStatus
    version: int = Field(description="grows with each change of evidence or status")
    created_at: str
    updated_at: str
    acknowledged: AlertAction | None
    resolved: AlertAction | None


class AlertPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ALERT_EXAMPLE], "next_cursor": "MjAyNi0xMS0yNVQwNDowNTowMy"}]}
    )

    items: list[Alert] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
