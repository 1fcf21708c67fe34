"""Findings and alerts. Pure: no I/O.

A rule returns :class:`Finding` values. A finding names its rule and subject; the alert id is derived
from exactly those, so the same finding found again is the same alert, updated with new evidence.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
