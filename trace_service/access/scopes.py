"""Department scopes (contract section 9): what a department key may read. Pure: no I/O.

A scope is one of:

* an event-type pattern: an exact type (``lot.tested``), a family (``farm.*``, ``slaughter.*``) or ``*`` (every
  event type). A pattern must name at least one type of the catalogue, so a typo is refused at issue time
  rather than silently sharing nothing;
* ``alerts``: the alerts, on the feed, subscriptions and ``GET /v1/alerts*``;
* ``market``: the market figures, on the feed, subscriptions and ``GET /v1/monitor/*``;
* ``personal``: people's names, identity codes and vehicle plates in the events
  (:mod:`trace_service.contract.personal`); without it they are removed.

Regulators and admins have :meth:`Scopes.everything`; operators have no scopes (they read through
ownership, contract section 7, never through the sharing paths).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from trace_service.access.models import Principal, Role
from trace_service.contract.events import EventType
from trace_service.errors import Forbidden

ALERTS = "alerts"
MARKET = "market"
PERSONAL = "personal"
FLAGS = (ALERTS, MARKET, PERSONAL)
MAX_SCOPES = 64

_PATTERN = re.compile(r"^(\*|[a-z]+\.\*|[a-z]+\.[a-z_]+)$")


def event_types() -> tuple[str, ...]:
    """Every event type of the catalogue."""
    return tuple(t.value for t in EventType)


def matches(pattern: str, event_type: str) -> bool:
    """Does an event-type pattern (``*``, ``farm.*`` or an exact type) cover this type?"""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


@cache
def expand(pattern: str) -> frozenset[str]:
    """The catalogue's types a pattern covers (empty for a pattern that covers none)."""
    return frozenset(t for t in event_types() if matches(pattern, t))


def check_event_pattern(pattern: str) -> str:
    """The pattern itself when it is well formed and covers a type of the catalogue; else ValueError."""
    if not _PATTERN.fullmatch(pattern):
        raise ValueError(
            f"{pattern!r} is not an event-type pattern: use an exact type (lot.tested), a family (farm.*) or *"
        )
    if not expand(pattern):
        raise ValueError(f"{pattern!r} matches no event type; the types are: {', '.join(event_types())}")
    return pattern


@dataclass(frozen=True)
class Scopes:
    """What a key may read. ``patterns`` are event-type patterns; the flags are the other scopes."""

    patterns: tuple[str, ...] = ()
    alerts: bool = False
    market: bool = False
    personal: bool = False

    @classmethod
    def everything(cls) -> Scopes:
        return cls(patterns=("*",), alerts=True, market=True, personal=True)

    @classmethod
    def of(cls, principal: Principal) -> Scopes:
        """The scopes of a caller: everything for staff, the key's scopes for a department, none otherwise."""
        if principal.role in (Role.ADMIN, Role.REGULATOR):
            return cls.everything()
        if principal.role != Role.DEPARTMENT:
            return cls()
        # Stored scopes were checked when the key was issued; one the catalogue no longer knows grants nothing.
        return _build(principal.scopes, strict=False)

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type these scopes cover."""
        return frozenset().union(*(expand(p) for p in self.patterns))

    @property
    def any_events(self) -> bool:
        return bool(self.event_types)

    @property
    def all_events(self) -> bool:
        return self.event_types == frozenset(event_types())

    def covers_event(self, event_type: str) -> bool:
        return any(matches(p, event_type) for p in self.patterns)

    def values(self) -> list[str]:
        """The scopes as they are written on a key: patterns first, then the flags, in a stable order."""
        flags = [f for f in FLAGS if getattr(self, f)]
        return [*self.patterns, *flags]


def parse_scopes(values: Sequence[str]) -> Scopes:
    """Scopes from their written form; ValueError, naming the scope at fault, for anything unknown."""
    if isinstance(values, str):
        raise ValueError("scopes are a list of strings")
    if not values:
        raise ValueError("a department key needs at least one scope")
    if len(values) > MAX_SCOPES:
        raise ValueError(f"at most {MAX_SCOPES} scopes")
    return _build(values, strict=True)


def _build(values: Iterable[str], *, strict: bool) -> Scopes:
    patterns: list[str] = []
    flags: set[str] = set()
    for value in values:
        if value in FLAGS:
            flags.add(value)
            continue
        try:
            patterns.append(check_event_pattern(value))
        except ValueError as exc:
            if not strict:
                continue
            if _PATTERN.fullmatch(value):
                raise
            raise ValueError(f"{exc}; the other scopes are {', '.join(FLAGS)}") from None
    return Scopes(
        patterns=tuple(dict.fromkeys(patterns)),
        alerts=ALERTS in flags,
        market=MARKET in flags,
        personal=PERSONAL in flags,
    )


def missing(scope: str) -> str:
    """The message of a 403 for a scope the key lacks."""
    return f"this department key lacks the scope `{scope}`"


NO_EVENT_SCOPE = "this department key has no event-type scope (such as `lot.tested` or `farm.*`)"


def not_covered(event_types: Iterable[str]) -> str:
    return "this department key's scopes do not cover " + ", ".join(f"`{t}`" for t in event_types)


def require_flag(principal: Principal, flag: str) -> Scopes:
    """Regulators and admins, or a department key with this scope (``alerts``, ``market``); else 403."""
    scopes = Scopes.of(principal)
    if principal.role == Role.DEPARTMENT and not getattr(scopes, flag):
        raise Forbidden(missing(flag), details=[{"scope": flag}])
    if principal.role not in (Role.ADMIN, Role.REGULATOR, Role.DEPARTMENT):
        raise Forbidden(f"this needs a regulator or admin key, or a department key with the scope {flag!r}")
    return scopes


def require_events(principal: Principal) -> Scopes:
    """Regulators and admins, or a department key with at least one event-type scope; else 403."""
    scopes = Scopes.of(principal)
    if principal.role == Role.DEPARTMENT and not scopes.any_events:
        raise Forbidden(NO_EVENT_SCOPE, details=[{"scope": "event type"}])
    return scopes
