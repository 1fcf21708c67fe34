"""Builders of the trace graph's SQL: the one recursive walk every reader uses, and batched statements made
from named columns.

A batched statement names its columns once, in a ``Columns``: the ``unnest(...) AS alias(names)`` clause and
the parameter tuple both come from that list, and each parameter is taken from the row by its field name (or
by a function given for that name). No list elsewhere has to keep the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Way = Literal["up", "down"]


def walk(name: str, way: Way, start: str, *, max_depth: str, skip_pending: str = "false") -> str:
    """A recursive CTE ``name(id, depth)``: the lots reached from ``start`` (a SELECT of ``(id, 0)`` rows)
    ``up`` to their parents or ``down`` to their children, at most ``max_depth`` steps (an SQL expression,
    usually a parameter). ``skip_pending`` is an SQL boolean: when true, links still pending are not followed.
    ``UNION`` dedupes diamonds and ends cycles; the depth cap bounds the rest."""
    follow, by = ("parent_id", "child_id") if way == "up" else ("child_id", "parent_id")
    return f"""{name}(id, depth) AS (
    {start}
    UNION
    SELECT e.{follow}, w.depth + 1 FROM {name} w JOIN edges e ON e.{by} = w.id
    WHERE w.depth < {max_depth} AND NOT (e.pending AND {skip_pending})
)"""


def found(*walks: str) -> str:
    """``found(id, depth)``: every lot the named walks reached, at its least depth."""
    union = " UNION ALL ".join(f"SELECT id, depth FROM {w}" for w in walks)
    return f"found AS (SELECT id, min(depth) AS depth FROM ({union}) x GROUP BY id)"


@dataclass(frozen=True)
class Columns:
    """The columns of a batched statement, by name, with their Postgres types, in one place."""

    alias: str
    columns: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, alias: str, **types: str) -> Columns:
        return cls(alias, tuple(types.items()))

    @property
    def names(self) -> str:
        """``a, b, c``: for ``INSERT INTO t (…)`` and ``SELECT …``."""
        return ", ".join(n for n, _ in self.columns)

    def unnest(self, first: int = 1) -> str:
        """``unnest($1::t1[], …) AS alias(a, b, …)``, parameters numbered from ``first``."""
        arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(self.columns, start=first))
        return f"unnest({arrays}) AS {self.alias}({self.names})"

    def params(self, rows: Sequence[Any], **given: Callable[[Any], Any]) -> tuple[list[Any], ...]:
        """One array per column: ``given[name](row)`` where a function is given for the column, else the row's
        attribute of that name."""
        unknown = set(given).difference(n for n, _ in self.columns)
        if unknown:
            raise KeyError(f"no such column: {', '.join(sorted(unknown))}")
        return tuple(
            [given[n](r) for r in rows] if n in given else [getattr(r, n) for r in rows] for n, _ in self.columns
        )
