"""Personal data in events (contract section 9): which fields identify a person, and their removal.

A department without the ``personal`` scope receives every event with these fields removed, on the feed,
exports, subscriptions and read endpoints alike. What counts as personal, per event type:

* ``slaughter.pigs_received``: ``owner.name`` and ``owner.code`` (the pigs' owner, 货主: mostly a farmer or a
  dealer, by name and ID or licence number) and ``vehicle_plate``;
* ``farm.pigs_dispatched``: ``vehicle_plate`` (a plate names the driver's or the owner's vehicle);
* ``trade.shipped``: ``destination``, free text that is often a delivery address or a person to hand to.

Codes of registered operators, farm codes, certificate numbers and ear tags stay: they identify holdings and
documents the receiving departments work with, and are already shared with the regulator.

A redacted envelope carries ``"redacted": [<dotted paths removed>]`` so that a receiver can tell a removed
field from one the producer left out. Pure: no I/O, no framework.
"""

from __future__ import annotations

from typing import Any

from trace_service.contract.events import EventType

# Paths inside ``data``, as tuples of keys.
PERSONAL_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    EventType.SLAUGHTER_PIGS_RECEIVED.value: (("owner", "name"), ("owner", "code"), ("vehicle_plate",)),
    EventType.FARM_PIGS_DISPATCHED.value: (("vehicle_plate",),),
    EventType.TRADE_SHIPPED.value: (("destination",),),
}


def has_personal(event_type: str | None) -> bool:
    """Can an event of this type carry personal data at all?"""
    return event_type in PERSONAL_PATHS


def redact(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope without its personal fields; the input is never changed.

    A field that is absent or already null is left as it is and not listed; everything else is copied only
    along the paths that change.
    """
    paths = PERSONAL_PATHS.get(envelope.get("event_type") or "")
    data = envelope.get("data")
    if not paths or not isinstance(data, dict):
        return envelope
    removed: list[str] = []
    new_data = data
    for path in paths:
        new_data, gone = _without(new_data, path)
        if gone:
            removed.append("data." + ".".join(path))
    if not removed:
        return envelope
    return {**envelope, "data": new_data, "redacted": sorted({*envelope.get("redacted", ()), *removed})}


def _without(node: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    head, rest = path[0], path[1:]
    if head not in node:
        return node, False
    if not rest:
        if node[head] is None:
            return node, False
        return {k: v for k, v in node.items() if k != head}, True
    child = node[head]
    if not isinstance(child, dict):
        return node, False
    new_child, gone = _without(child, rest)
    return ({**node, head: new_child}, True) if gone else (node, False)
