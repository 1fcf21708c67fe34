"""The upward report's file format (contract section 9; described in docs/sharing.md). Pure: no I/O.

A day's report is one NDJSON file per node (the reporting operator), named ``<operator code>.ndjson``, and a
``manifest.json``. Each line of a node's file is one event whose ``occurred_at`` falls on that day in the city's
time zone, in ``(occurred_at, event_id)`` order: the envelope as reported plus ``recorded_at`` and the
``sha256`` of its canonical form, serialised with sorted keys. Nothing in a file or the manifest depends on
when the report ran, so the same records give the same bytes and the same digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

FORMAT = "trace-service.report.v1"
MANIFEST = "manifest.json"
NDJSON = "application/x-ndjson"


def window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The day from local midnight to the next local midnight."""
    tz = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start, end


def file_name(operator: str) -> str:
    return f"{operator}.ndjson"


def line(envelope: dict[str, Any], recorded_at: datetime, sha256: bytes, timezone: str) -> bytes:
    """One record: the envelope as reported, with when the service recorded it and its fingerprint."""
    record = {
        **envelope,
        "recorded_at": recorded_at.astimezone(ZoneInfo(timezone)).isoformat(),
        "sha256": sha256.hex(),
    }
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"


@dataclass(frozen=True)
class NodeFile:
    name: str
    operator: str
    kind: str | None
    region: str | None
    records: int
    size: int
    sha256: str  # hex


def manifest(day: date, timezone: str, files: list[NodeFile]) -> bytes:
    """The manifest: every file with its count, size and SHA-256, and the totals."""
    start, end = window(day, timezone)
    ordered = sorted(files, key=lambda f: f.name)
    doc = {
        "format": FORMAT,
        "date": day.isoformat(),
        "timezone": timezone,
        "window": {"from": start.isoformat(), "to": end.isoformat()},
        "files": [
            {
                "name": f.name,
                "operator": f.operator,
                "operator_kind": f.kind,
                "region": f.region,
                "records": f.records,
                "bytes": f.size,
                "sha256": f.sha256,
            }
            for f in ordered
        ],
        "totals": {
            "files": len(ordered),
            "records": sum(f.records for f in ordered),
            "bytes": sum(f.size for f in ordered),
        },
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
