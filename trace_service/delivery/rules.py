"""The rules of subscriptions and their deliveries. Pure: no I/O.

* Filters: which kinds, event types and regions a subscription may ask for, checked against the scopes of
  the key that creates it (a filter outside them would silently deliver nothing).
* Retries: exponential backoff with jitter, and when a run of failures pauses a subscription.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trace_service.access import scopes as scope_rules
from trace_service.access.scopes import Scopes
from trace_service.contract.codes import is_real_region

KINDS = ("event", "alert", "market")


@dataclass(frozen=True)
class Filters:
    kinds: tuple[str, ...] | None
    event_types: tuple[str, ...] | None
    rules: tuple[str, ...] | None
    regions: tuple[str, ...] | None


def region_prefix(code: str) -> str:
    """The prefix a GB/T 2260 code stands for: a province (440000) covers 44xxxx, a prefecture (442000) 4420xx."""
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def check_filters(
    scopes: Scopes,
    kinds: Sequence[str] | None,
    event_types: Sequence[str] | None,
    rules: Sequence[str] | None,
    regions: Sequence[str] | None,
) -> tuple[Filters, list[dict[str, object]]]:
    """The filters once each in the order given, and the problems with them (each a 422 detail)."""
    problems: list[dict[str, object]] = []
    allowed_kinds = {"event": scopes.any_events, "alert": scopes.alerts, "market": scopes.market}
    for i, kind in enumerate(kinds or ()):
        if kind not in KINDS:
            problems.append({"field": "kinds", "index": i, "message": f"unknown kind {kind!r}: one of {KINDS}"})
        elif not allowed_kinds[kind]:
            problems.append({"field": "kinds", "index": i, "message": f"this key's scopes do not cover {kind} items"})
    for i, pattern in enumerate(event_types or ()):
        try:
            scope_rules.check_event_pattern(pattern)
        except ValueError as exc:
            problems.append({"field": "event_types", "index": i, "message": str(exc)})
            continue
        if not any(scopes.covers_event(t) for t in scope_rules.expand(pattern)):
            problems.append(
                {"field": "event_types", "index": i, "message": f"this key's scopes cover no type of {pattern!r}"}
            )
    if event_types and kinds is not None and "event" not in kinds:
        problems.append({"field": "event_types", "message": "event types need the kind event among the kinds"})
    if rules and kinds is not None and "alert" not in kinds:
        problems.append({"field": "rules", "message": "rules filter alerts: they need the kind alert among the kinds"})
    if rules and not scopes.alerts:
        problems.append({"field": "rules", "message": "this key's scopes do not cover alerts"})
    for i, region in enumerate(regions or ()):
        if not is_real_region(region):
            problems.append(
                {"field": "regions", "index": i, "message": f"{region!r} is not a GB/T 2260 code of a real province"}
            )

    def once(values: Sequence[str] | None) -> tuple[str, ...] | None:
        return None if values is None else tuple(dict.fromkeys(values))

    return Filters(once(kinds), once(event_types), once(rules), once(regions)), problems


def backoff(attempts: int, first: float, cap: float, rand: random.Random | None = None) -> float:
    """Seconds before retry number ``attempts`` (1 for the first retry): doubling from ``first`` up to ``cap``,
    then drawn between half and all of that, so that receivers that failed together are not retried together."""
    delay = min(cap, first * float(2 ** min(max(attempts - 1, 0), 40)))
    r = rand.random() if rand is not None else random.random()  # noqa: S311 - jitter, not a secret
    return delay * (0.5 + 0.5 * r)


def pauses(failing_since: datetime | None, now: datetime, pause_after: float) -> bool:
    """Has this run of failures lasted long enough to pause the subscription?"""
    return failing_since is not None and now - failing_since >= timedelta(seconds=pause_after)
