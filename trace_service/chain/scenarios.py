"""Scenario streams (``events/scenarios/*.json``): whole chains that tests, docs and the demo replay.

A scenario holds the operators it needs (codes of the demo operators in ``events/operators.json``, or
whole registration bodies in a scenario file of one's own), its events and what the graph must look like
afterwards.
:func:`instantiate` gives a copy whose operator codes, lot codes, vouchers, certificate numbers and
event ids carry a tag, so the same chain can be replayed many times into one database.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trace_service.contract.epcis import hashing as epcis_hashing
from trace_service.contract.events import EPCIS_URIS, EventType

SCENARIOS = Path(__file__).resolve().parents[2] / "events" / "scenarios"
# The demo operators, one entry per code; a catalogue scenario names its operators by code.
OPERATORS = SCENARIOS.parent / "operators.json"

_LOT_KEYS = {"lot", "from_lot", "sale_code"}
_NUMBER_KEYS = {"voucher_number", "number", "asf_report"}


def demo_operators() -> dict[str, dict[str, Any]]:
    """``events/operators.json`` by code: the registration body of every demo operator."""
    entries: list[dict[str, Any]] = json.loads(OPERATORS.read_text(encoding="utf-8"))["operators"]
    return {op["code"]: op for op in entries}


def _operators(listed: list[Any]) -> list[dict[str, Any]]:
    """A scenario's operators as registration bodies: a code is looked up among the demo operators, a
    whole body (a scenario file of one's own) is taken as it is."""
    if all(isinstance(op, dict) for op in listed):
        return list(listed)
    known = demo_operators()
    out = []
    for op in listed:
        if isinstance(op, dict):
            out.append(op)
        elif op in known:
            out.append(dict(known[op]))
        else:
            raise ValueError(f"operator {op!r} is not in {OPERATORS}")
    return out


def load(name: str, folder: Path = SCENARIOS) -> dict[str, Any]:
    """A scenario by name (``pig_chain``, ``faults/asf_positive``); a faulty twin is resolved against its base."""
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    if "base" in data:
        base = load(data["base"], folder)
        data = {**base, **{k: v for k, v in data.items() if k not in ("base", "changes")}, "base": data["base"],
                "events": apply_changes(base["events"], data.get("changes", [])),
                "operators": base["operators"] + data.get("operators", [])}  # fmt: skip
    data["operators"] = _operators(data.get("operators", []))
    return data


def _path_set(node: Any, path: str, value: Any, *, drop: bool = False) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if drop:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _shift(node: Any, delta: timedelta) -> Any:
    if isinstance(node, dict):
        return {k: _shift(v, delta) for k, v in node.items()}
    if isinstance(node, list):
        return [_shift(v, delta) for v in node]
    if isinstance(node, str) and len(node) >= 20 and node[4:5] == "-" and "T" in node:
        try:
            moment = datetime.fromisoformat(node)
        except ValueError:
            return node
        if moment.tzinfo is not None:
            return (moment + delta).isoformat()
    return node


def apply_changes(events: list[dict[str, Any]], changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The faulty twin of a stream. Events are named by their index in the base stream.

    ``set`` / ``drop`` a field (dotted path inside the event), ``remove`` events, ``keep`` only the first
    N, ``shift`` every time of some events by days, ``add`` a new event at the end.
    """
    out = [copy.deepcopy(e) for e in events]
    removed: set[int] = set()
    added: list[dict[str, Any]] = []
    for ch in changes:
        op = ch["op"]
        if op in ("set", "drop"):
            _path_set(out[ch["event"]], ch["path"], ch.get("value"), drop=op == "drop")
        elif op == "remove":
            removed.update(ch["events"])
        elif op == "keep":
            removed.update(range(ch["first"], len(out)))
        elif op == "shift":
            for i in ch["events"]:
                out[i] = _shift(out[i], timedelta(days=ch["days"]))
        elif op == "add":
            added.append(ch["event"])
        else:
            raise ValueError(f"unknown change {op!r}")
    return [e for i, e in enumerate(out) if i not in removed] + added


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


def ear_tags_in(node: Any) -> list[str]:
    """Every ear tag listed anywhere in a JSON document (an event, a list of events)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ear_tags" and isinstance(value, list):
                found.extend(v for v in value if isinstance(v, str))
            else:
                found.extend(ear_tags_in(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(ear_tags_in(item))
    return found


def replace_strings(node: Any, mapping: dict[str, str]) -> Any:
    """A copy of a JSON document with every string that is a key of ``mapping`` replaced by its value."""
    if isinstance(node, dict):
        return {k: replace_strings(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(v, mapping) for v in node]
    if isinstance(node, str):
        return mapping.get(node, node)
    return node


def instantiate(scenario: dict[str, Any], tag: str, *, operators: bool = True) -> dict[str, Any]:
    """A copy of the scenario with every code made unique by ``tag`` (1-4 characters of [0-9A-Z]).

    With ``operators=False`` the operator codes stay as they are: the copy is another chain through the
    same operators (lots, numbers, ear tags and event ids are still its own).
    """
    if not (1 <= len(tag) <= 4 and tag.isalnum() and tag.upper() == tag):
        raise ValueError("tag must be 1-4 characters of [0-9A-Z]")
    lots: set[str] = set()
    numbers: set[str] = set()
    _collect(scenario["events"], lots, numbers)
    _collect(scenario.get("expect", {}), lots, numbers)
    mapping = {op["code"]: op["code"] + tag for op in scenario["operators"]} if operators else {}
    # Ear tags are never reused: each replay gets its own serials (region kept, serial derived from the tag).
    for tag_code in ear_tags_in(scenario["events"]):
        serial = int(hashlib.sha256(f"{tag_code}/{tag}".encode()).hexdigest(), 16) % 10**8
        mapping[tag_code] = f"{tag_code[:7]}{serial:08d}"
    mapping |= {code: code + tag for code in lots}
    mapping |= {n: f"{n}-{tag}" for n in numbers}
    out = copy.deepcopy(scenario)
    out["operators"] = replace_strings(out["operators"], mapping)
    out["expect"] = replace_strings(out.get("expect", {}), mapping)
    # Expected lots are keyed by code.
    if "lots" in out["expect"]:
        out["expect"]["lots"] = {mapping.get(k, k): v for k, v in scenario["expect"]["lots"].items()}
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"trace-service/scenario/{tag}")
    events = []
    for ev in scenario["events"]:
        new = replace_strings(ev, mapping)
        new["event_id"] = str(uuid.uuid5(namespace, ev["event_id"]))
        if new.get("event_type") == EventType.EPCIS_EVENT:
            new = _instantiate_epcis(new, mapping, tag)
        events.append(new)
    out["events"] = events
    out["mapping"] = mapping
    return out


def _epcis_strings(node: Any, mapping: dict[str, str], tag: str) -> Any:
    """The identifiers of an EPCIS event made unique by ``tag``: operator URIs as the operators were mapped,
    the lot of each LGTIN and city lot URI with the tag appended."""
    if isinstance(node, dict):
        return {k: _epcis_strings(v, mapping, tag) for k, v in node.items()}
    if isinstance(node, list):
        return [_epcis_strings(v, mapping, tag) for v in node]
    if isinstance(node, str):
        operator_prefix, lot_prefix = EPCIS_URIS.operator_prefix, EPCIS_URIS.lot_prefix
        if node.startswith(operator_prefix):
            code = node[len(operator_prefix) :]
            return operator_prefix + mapping.get(code, code)
        if node.startswith(lot_prefix):
            code = node[len(lot_prefix) :]
            return lot_prefix + mapping.get(code, code + tag)
        if node.startswith("urn:epc:class:lgtin:"):
            return node + tag
    return node


def _instantiate_epcis(envelope: dict[str, Any], mapping: dict[str, str], tag: str) -> dict[str, Any]:
    """An ``epcis.event`` of a scenario copy: its identifiers tagged, and its id derived again from the event
    hash (contract: the id of a captured EPCIS event is its hash's)."""
    data = envelope["data"]
    event = _epcis_strings(data["event"], mapping, tag)
    digest = epcis_hashing.event_hash(event, data.get("context"))
    envelope["data"] = {**data, "event": event}
    envelope["event_id"] = str(epcis_hashing.envelope_id(digest, error_declaration="errorDeclaration" in event))
    return envelope
