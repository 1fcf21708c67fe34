"""Scenario streams (``events/scenarios/*.json``): whole chains that tests, docs and the demo replay.

A scenario holds the operators it needs, its events and what the graph must look like afterwards.
:func:`instantiate` gives a copy whose operator codes, lot codes, vouchers, certificate numbers and
event ids carry a tag, so the same chain can be replayed many times into one database.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).resolve().parents[2] / "events" / "scenarios"

_LOT_KEYS = {"lot", "from_lot", "sale_code"}
_NUMBER_KEYS = {"voucher_number", "number", "asf_report"}


def load(name: str, folder: Path = SCENARIOS) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _collect(node: Any, lots: set[str], numbers: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key in _LOT_KEYS:
                    lots.add(value)
                elif key in _NUMBER_KEYS or key.endswith("cert_number"):
                    numbers.add(value)
            else:
                _collect(value, lots, numbers)
    elif isinstance(node, list):
        for item in node:
            _collect(item, lots, numbers)


def _replace(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, mapping) for v in node]
    if isinstance(node, str):
        return mapping.get(node, node)
    return node


def instantiate(scenario: dict[str, Any], tag: str) -> dict[str, Any]:
    """A copy of the scenario with every code made unique by ``tag`` (1-4 characters of [0-9A-Z])."""
    if not (1 <= len(tag) <= 4 and tag.isalnum() and tag.upper() == tag):
        raise ValueError("tag must be 1-4 characters of [0-9A-Z]")
    lots: set[str] = set()
    numbers: set[str] = set()
    _collect(scenario["events"], lots, numbers)
    _collect(scenario.get("expect", {}), lots, numbers)
    mapping = {op["code"]: op["code"] + tag for op in scenario["operators"]}
    mapping |= {code: code + tag for code in lots}
    mapping |= {n: f"{n}-{tag}" for n in numbers}
    out = copy.deepcopy(scenario)
    out["operators"] = _replace(out["operators"], mapping)
    out["expect"] = _replace(out.get("expect", {}), mapping)
    # Expected lots are keyed by code.
    if "lots" in out["expect"]:
        out["expect"]["lots"] = {mapping.get(k, k): v for k, v in scenario["expect"]["lots"].items()}
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"trace-service/scenario/{tag}")
    events = []
    for ev in scenario["events"]:
        new = _replace(ev, mapping)
        new["event_id"] = str(uuid.uuid5(namespace, ev["event_id"]))
        events.append(new)
    out["events"] = events
    out["mapping"] = mapping
    return out
