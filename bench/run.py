"""The project's single benchmark runner (issue 5): one command that prints a table and writes JSON.

Sections, in this order (``--only`` picks some; all by default):

ingest     One simulated city day (``--scale city --days 1 --seed 1``: ~157,000 events, mostly retail.sold and
           trade.shipped/received). The operators are registered through the API once, into a migrated
           database that every step below clones as its own fresh database.
             produce  raw limit: aiokafka produces the events (key = operator, value = the event JSON) straight
                      to a topic of ``--partitions`` partitions (acks=all, large batches): events/s.
             apply    those messages already in the topic, one worker started: events/s from the start of the
                      first transaction that applied events (their ``recorded_at``) to the commit of the last
                      message (the group join is not counted), the cores of the worker and of the database's
                      Postgres backends, the worker's peak RSS. Rules on (default settings); ``--modes on,off``
                      adds a run with TRACE_RULE_ENABLED=false TRACE_MARKET_ENABLED=false.
             storage  the first apply run's database after the day: ``pg_database_size``, the largest tables'
                      ``pg_total_relation_size`` and the events table's ``pg_relation_size``, bytes per event
                      (dead tuples included when the server runs with autovacuum off).
             copy     raw limit: every row of every table the first apply run wrote (all tables with rows but
                      operators, api_keys and alembic_version) is read out with COPY into memory, then COPY'd
                      (binary) into the same tables of another fresh database, parents before children, in one
                      transaction: events/s equivalent (events / COPY seconds) and apply / COPY (goal ≥ 30 %).
             e2e      the API and ``--e2e-workers`` workers (default 2), once per shape of ``--e2e-shapes`` (each on its
                      own topic and fresh database): the events posted through HTTP with the operators' keys (a market's
                      key posts for its tenants), at most ``--batch`` events a request, ``--concurrency`` requests in
                      flight, 503/429 retried after Retry-After; events/s from the first POST to the last event applied,
                      POST latency p50/p99, peak RSS of API and worker (goal < 300 MB each, both shapes), the cores of
                      every process. Shapes:
                        reporters  window by window of simulated time as the simulator posts them
                                   (``runner.windows``: ``batch * concurrency * 2`` events, at most 2 h of
                                   simulated time), each posting principal's events of a window in its own
                                   requests: realistic reporters, but most requests carry a few events, so it
                                   measures the cost per request (no goal; shown as context).
                        bulk       the same events in time order, in windows of 50,000 events with no limit of
                                   simulated time, each poster's events of a window in requests of at most
                                   ``--batch``: the throughput of full requests (goal ≥ 10,000 events/s).
                      The requests come from a generator and ``--concurrency`` of them stay in flight across
                      window boundaries: the next window's first request starts as soon as one of the previous
                      window's returns, not after its slowest. Windows are still submitted in order (for
                      reporters nothing else changes), but a request of the next window may be answered before
                      one of the previous window still in flight.
scale      The same messages applied by 1, 2 and 4 workers of one consumer group on a topic of 8 partitions,
           and by 2 workers on 4 and 16 partitions, each on a fresh database, timed as apply (the joins are not
           counted; a rebalance after the first commit is, and the table says so). The workers share the cores
           with Postgres and the broker: on 2 cores this shows the overhead of scaling out, not a speed-up.
lineage    ``python -m bench.lineage --lots 1000000`` (quick: 100,000): lots, backward and forward trace p50/p99,
           farm recall p50 (goals of issue 3).
alerts     ``python -m bench.alerts``: alert latency p99 on GET and on the SSE stream, rule cost (issue 4).
detection  ``python -m bench.detection --scale small --days 2`` (quick: tiny): per-rule precision and recall.
epcis      ``python -m bench.epcis --documents 10 --rows 1000000`` (quick: 2 documents, 20,000 rows): EPCIS capture
           events/s end to end next to a validate-only pass, MATCH_anyEPC on one lot p50/p99 (goals of issue 14).

Workers run with 2 s group sessions (joins take ~1 s on the embedded broker). Progress is read from the
group's committed offsets (a worker commits right after each database commit), not by counting the events
table, whose ``count(*)`` would compete with the worker for the cores; the events and dead letters are
counted once at the end. The sections lineage, alerts, detection and epcis run their own runners as child
processes (``--out`` gives their JSON back); ``--lineage-args``, ``--alerts-args``, ``--detection-args`` and
``--epcis-args`` add options.

Output: the table on stdout, progress on stderr, and JSON (machine, commit, every figure and raw number) in
``bench/results/run-<UTC time>.json``. Databases are dropped (unless ``--keep``), child processes and the
broker stopped, also on Ctrl-C and errors. ``--quick`` shrinks every size for a smoke run of a few minutes.
Run the full size on a quiet machine: every figure is a lower bound when other work shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench import common
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.logging import configure_logging
from trace_service.runtime.embedded import EmbeddedBroker
from trace_service.settings import Settings
from trace_service.sim import runner
from trace_service.sim.city import build_city
from trace_service.sim.events import Simulation, simulate

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("ingest", "scale", "lineage", "alerts", "detection", "epcis")
MODES = {"on": {}, "off": {"TRACE_RULE_ENABLED": "false", "TRACE_MARKET_ENABLED": "false"}}
# Short group sessions: the embedded broker holds a join for about half the session timeout.
GROUP = {"TRACE_WORKER_SESSION_TIMEOUT_MS": "2000", "TRACE_WORKER_HEARTBEAT_INTERVAL_MS": "500"}
SCALE_RUNS = ((1, 8), (2, 8), (4, 8), (2, 4), (2, 16))  # (workers, partitions)
# Tables filled before the worker runs (by migrations and registration): not part of the COPY limit.
NOT_APPLIED = frozenset({"operators", "api_keys", "alembic_version"})
# The shapes of the end-to-end run: the key of their figures in the ingest section's JSON, and their label.
E2E_SHAPES = {"reporters": "e2e", "bulk": "e2e_bulk"}
BULK_WINDOW = 50_000  # events of a bulk window
BULK_SPAN = timedelta(days=400)  # no limit of simulated time in practice
STORAGE_TABLES = 10  # the largest tables listed in the storage figures

GOAL_E2E = 10_000  # events/s, first POST to last event applied (issue 5)
GOAL_APPLY_VS_COPY = 0.30  # worker apply against a raw COPY of its rows (issue 5)
GOAL_RSS_MB = 300.0  # peak RSS of each process (issue 5)
GOAL_BACKWARD_MS = (2.0, 10.0)  # p50, p99 (issue 3)
GOAL_RECALL_P50_MS = 30.0  # issue 3
GOAL_RATIO = 5.0  # API / SQL at p50 (issue 3)
GOAL_ALERT_P99_S = 1.0  # issue 4
GOAL_RULE_COST = 0.20  # issue 4
GOAL_EPCIS_CAPTURE = 5_000  # events/s end to end, documents of 1,000 events (issue 14)
GOAL_EPCIS_QUERY_P50_MS = 10.0  # MATCH_anyEPC on one lot at 1 M events (issue 14)

QUICK_ARGS = {
    "lineage": ["--lots", "100000", "--backward", "300", "--forward", "100", "--recall", "10", "--warmup", "50"],
    "alerts": ["--samples", "20", "--warmup-triggers", "2", "--warmup", "2", "--events", "12000", "--cost-runs", "1"],
    "detection": ["--scale", "tiny", "--days", "2"],
    "epcis": ["--documents", "2", "--rows", "20000", "--queries", "50"],
}
FULL_ARGS = {
    "lineage": ["--lots", "1000000"],
    "alerts": [],
    "detection": ["--scale", "small", "--days", "2"],
    "epcis": ["--documents", "10", "--rows", "1000000"],
}

_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


class SectionError(RuntimeError):
    """A section could not be measured; the others still are."""


# -- the table -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its value, the raw limit or ratio beside it, and the goal it meets."""

    section: str
    figure: str
    value: str
    limit: str = ""
    goal: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return f"{self.goal}: {common.goal(self.met)}" if self.met is not None else self.goal


def format_table(rows: Iterable[Row], notes: Mapping[str, list[str]] | None = None) -> str:
    """The rows as a plain-text table, grouped by section, each section followed by its notes."""
    rows = list(rows)
    notes = notes or {}
    head = ("figure", "value", "raw limit / ratio", "goal")
    cells = [head, *((r.figure, r.value, r.limit, r.verdict) for r in rows)]
    w = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:>{w[1]}}  {head[2]:<{w[2]}}  {head[3]}".rstrip()]
    sections = list(dict.fromkeys([*(r.section for r in rows), *notes]))
    for section in sections:
        lines.append(f"{section}:")
        for r in rows:
            if r.section == section:
                lines.append(f"{r.figure:<{w[0]}}  {r.value:>{w[1]}}  {r.limit:<{w[2]}}  {r.verdict}".rstrip())
        lines += [f"  note: {n}" for n in notes.get(section, [])]
    return "\n".join(lines)


def _rate(value: float) -> str:
    return f"{value:,.0f} events/s"


def _ms(*values: float) -> str:
    return " / ".join(f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values) + " ms"


def ingest_rows(data: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    copy = data.get("copy")
    if "produce" in data:
        p = data["produce"]
        rows.append(
            Row(
                "ingest",
                f"raw produce, aiokafka → broker, {p['partitions']} partitions",
                _rate(p["events_per_s"]),
                "limit",
            )
        )
    for mode, a in data.get("apply", {}).items():
        judged = copy is not None and copy["source_mode"] == mode
        ratio = a["events_per_s"] / copy["events_per_s"] if copy else None
        rows.append(
            Row(
                "ingest",
                f"worker apply, rules {mode}",
                _rate(a["events_per_s"]),
                f"{ratio:.0%} of raw COPY" if ratio is not None else "",
                f"≥ {GOAL_APPLY_VS_COPY:.0%} of COPY" if judged else "",
                ratio >= GOAL_APPLY_VS_COPY if judged and ratio is not None else None,
            )
        )
        cpu = a["cpu"]
        rows.append(
            Row(
                "ingest",
                "  cores worker / Postgres",
                f"{cpu['worker_cores']:.2f} / {cpu['postgres_cores']:.2f}",
                f"machine {cpu['machine_busy']:.0%} busy",
            )
        )
        rss = a["peak_rss_mb"]["worker"]
        rows.append(
            Row("ingest", "  worker peak RSS", f"{rss:.0f} MB", "", f"< {GOAL_RSS_MB:.0f} MB", rss < GOAL_RSS_MB)
        )
    apply = data.get("apply", {})
    if "on" in apply and "off" in apply:
        cost = 1 - apply["on"]["events_per_s"] / apply["off"]["events_per_s"]
        rows.append(Row("ingest", "  rule cost, 1 - on/off", f"{cost:.0%}", "", "(alerts section judges it)"))
    if copy:
        rows.append(
            Row(
                "ingest",
                f"raw COPY of the same rows ({copy['rows']:,} rows, {len(copy['tables'])} tables)",
                _rate(copy["events_per_s"]),
                f"limit; {copy['rows_per_s']:,.0f} rows/s",
            )
        )
    if "storage" in data:
        rows.append(storage_row(data["storage"]))
    for shape, key in E2E_SHAPES.items():
        if key in data:
            rows += e2e_rows(shape, data[key], data.get("produce"))
    return rows


def e2e_label(shape: str, e: Mapping[str, Any]) -> str:
    workers = e.get("workers", 1)
    who = f", {workers} workers" if workers != 1 else ""
    if shape == "bulk":
        return f"end to end (bulk, ≤{e.get('batch', 1000)}-event requests{who})"
    return f"end to end (reporters' requests{who})"


def e2e_rows(shape: str, e: Mapping[str, Any], produce: Mapping[str, Any] | None) -> list[Row]:
    """The rows of one end-to-end shape: the events/s goal is judged on bulk only, the RSS goal on both."""
    judged = shape == "bulk"
    rss, cpu, lat = e["peak_rss_mb"], e["cpu"], e["post_ms"]
    names = ("api", "worker", "postgres", "broker", "bench")
    return [
        Row(
            "ingest",
            e2e_label(shape, e),
            _rate(e["events_per_s"]),
            f"{e['events_per_s'] / produce['events_per_s']:.0%} of raw produce" if produce else "",
            f"≥ {GOAL_E2E:,} events/s" if judged else "(the bulk row judges it)",
            e["events_per_s"] >= GOAL_E2E if judged else None,
        ),
        Row(
            "ingest",
            "  POST accepted",
            _rate(e["post_events_per_s"]),
            f"{e['requests']:,} requests of {e['events_per_request']:.1f} events (mean)",
        ),
        Row("ingest", "  POST latency p50 / p99", _ms(lat["p50"], lat["p99"]), f"{e['retries']:,} retries"),
        Row(
            "ingest",
            "  peak RSS API / worker",
            f"{rss['api']:.0f} / {rss['worker']:.0f} MB",
            "",
            f"< {GOAL_RSS_MB:.0f} MB each",
            max(rss["api"], rss["worker"]) < GOAL_RSS_MB,
        ),
        Row(
            "ingest",
            "  cores API / worker / Postgres / broker / bench",
            " / ".join(f"{cpu[n + '_cores']:.2f}" for n in names),
            f"machine {cpu['machine_busy']:.0%} busy",
        ),
        Row(
            "ingest",
            "  backlog when the last POST returned",
            f"{e['backlog_at_last_post']:,} events",
            f"applied {e['tail_s']:.1f} s later",
        ),
    ]


def storage_row(st: Mapping[str, Any]) -> Row:
    """The size of the first apply run's database after the day, per event, and the events table's share."""
    share = st["events_table_bytes"] / st["database_bytes"] if st["database_bytes"] else float("nan")
    dead = "; incl. dead tuples (autovacuum off)" if st.get("autovacuum") == "off" else ""
    return Row(
        "ingest",
        "storage after the day",
        f"{st['database_bytes'] / 2**20:,.0f} MB, {st['bytes_per_event']:,.0f} bytes/event",
        f"events table {share:.0%}{dead}",
    )


def scale_rows(data: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    runs = data.get("runs", [])
    base = next((r["events_per_s"] for r in runs if r["workers"] == 1 and "error" not in r), None)
    for r in runs:
        label = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, {r['partitions']} partitions"
        if "error" in r:
            rows.append(Row("scale", label, "failed", "see the note"))
            continue
        cores = sum(v for k, v in r["cpu"].items() if k.startswith("worker"))
        rows.append(
            Row(
                "scale",
                label,
                _rate(r["events_per_s"]),
                (f"{r['events_per_s'] / base:.0%} of 1 worker; " if base else "")
                + f"cores workers {cores:.2f}, Postgres {r['cpu']['postgres_cores']:.2f}",
            )
        )
    return rows


def scale_notes(data: Mapping[str, Any], cores: int) -> list[str]:
    notes = [
        f"{cores} cores shared by the workers, Postgres and the broker: this shows the overhead of more workers "
        "and partitions, not a speed-up"
        if cores <= 2
        else f"{cores} cores shared by the workers, Postgres, the broker and the bench"
    ]
    for r in data.get("runs", []):
        if "error" in r:
            notes.append(f"{r['workers']} workers on {r['partitions']} failed: {r['error']}")
            continue
        if r.get("log_warnings"):
            notes.append(f"{r['workers']} workers on {r['partitions']} logged {_counts(r['log_warnings'])}")
        if r.get("members_at_first_commit", r["workers"]) != r["workers"]:
            notes.append(
                f"{r['workers']} workers on {r['partitions']}: {r['members_at_first_commit']} in the group at the "
                f"first commit; a rebalance is inside the timed part (longest stall {r['max_stall_s']:.1f} s)"
            )
    return notes


def ingest_notes(data: Mapping[str, Any]) -> list[str]:
    """Whatever did not go as it should: dead letters, rejected posts, events missing, intake rows left."""
    notes = []
    for mode, a in data.get("apply", {}).items():
        if a["log_warnings"]:
            notes.append(f"apply {mode}: the worker logged {_counts(a['log_warnings'])}")
        if a["dead_letters"] or a["events"] + a["dead_letters"] != a["messages"]:
            notes.append(
                f"apply {mode}: {a['events']:,} events and {a['dead_letters']:,} dead letters for {a['messages']:,} "
                "messages"
            )
    for shape, key in E2E_SHAPES.items():
        e = data.get(key)
        if not e:
            continue
        name = f"e2e {shape}"
        if e["rejected"]:
            notes.append(f"{name}: {e['rejected']:,} events rejected, e.g. {e['first_errors'][0]}")
        if e["dead_letters"] or e["events_applied"] != e["accepted"]:
            notes.append(
                f"{name}: {e['events_applied']:,} events applied and {e['dead_letters']:,} dead letters for "
                f"{e['accepted']:,} accepted"
            )
        if e["log_warnings"]:
            notes.append(f"{name}: the API and the worker logged {_counts(e['log_warnings'])}")
        if e["intake_left"]:
            notes.append(f"{name}: {e['intake_left']:,} intake rows left after the last event was applied")
        if shape == "reporters":
            notes.append(
                f"e2e reporters posts the simulator's traffic as its reporters would: {e['events_per_request']:.1f} "
                "events a request on average (most reporters have a few events in a window of simulated time)"
            )
        else:
            notes.append(
                f"e2e bulk posts the same events in time order, in windows of {e.get('window_events', BULK_WINDOW):,} "
                f"events, each poster's events of a window in requests of at most {e.get('batch', 1000):,}: "
                f"{e['events_per_request']:.1f} events a request on average"
            )
    return notes


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def lineage_rows(doc: Mapping[str, Any]) -> list[Row]:
    r = doc.get("result", doc)
    b, f, c = (r[k]["http_ms"] for k in ("backward", "forward", "recall"))
    return [
        Row("lineage", "graph", f"{r['graph']['lots']:,} lots", f"{r['graph']['edges']:,} edges"),
        Row(
            "lineage",
            "backward trace p50 / p99 (httpx)",
            _ms(b["p50"], b["p99"]),
            f"SQL p50 {r['backward']['sql_ms']['p50']:.2f} ms, API/SQL {r['backward']['ratio_p50']:.1f}x",
            f"p50 ≤ {GOAL_BACKWARD_MS[0]:.0f} ms, p99 ≤ {GOAL_BACKWARD_MS[1]:.0f} ms",
            b["p50"] <= GOAL_BACKWARD_MS[0] and b["p99"] <= GOAL_BACKWARD_MS[1],
        ),
        Row(
            "lineage",
            "forward trace p50 / p99",
            _ms(f["p50"], f["p99"]),
            f"API/SQL {r['forward']['ratio_p50']:.1f}x",
            f"API/SQL ≤ {GOAL_RATIO:.0f}x",
            r["forward"]["ratio_p50"] <= GOAL_RATIO,
        ),
        Row(
            "lineage",
            "farm recall p50",
            _ms(c["p50"]),
            f"{r['recall']['lots']['p50']:,.0f} lots, API/SQL {r['recall']['ratio_p50']:.1f}x",
            f"≤ {GOAL_RECALL_P50_MS:.0f} ms",
            c["p50"] <= GOAL_RECALL_P50_MS,
        ),
    ]


def alerts_rows(doc: Mapping[str, Any]) -> list[Row]:
    r = doc.get("result", doc)
    rows: list[Row] = []
    lat = r.get("latency")
    if lat:
        for key, label in (
            ("get", "alert on GET /v1/alerts/{id} p50 / p99"),
            ("sse", "alert on the SSE stream p50 / p99"),
        ):
            s, missing = lat[key], lat[f"{key}_missing"]
            rows.append(
                Row(
                    "alerts",
                    label,
                    _ms(s["p50"] * 1000, s["p99"] * 1000),
                    f"{lat['samples']} samples, {missing} missing",
                    f"p99 ≤ {GOAL_ALERT_P99_S:.0f} s",
                    s["p99"] <= GOAL_ALERT_P99_S and not missing,
                )
            )
    cost = r.get("cost")
    if cost and "on" in cost.get("cost_vs_off", {}):
        rates, share = cost["events_per_s"], cost["cost_vs_off"]["on"]
        timed = not math.isnan(share)  # too few events for more than one batch cannot be timed
        rows.append(
            Row(
                "alerts",
                "rule cost, 1 - on/off",
                f"{share:.0%}" if timed else "n/a",
                f"on {rates['on']:,.0f} / off {rates['off']:,.0f} events/s" if timed else "one batch: not timed",
                f"≤ {GOAL_RULE_COST:.0%}",
                share <= GOAL_RULE_COST if timed else None,
            )
        )
    return rows


def detection_rows(doc: Mapping[str, Any]) -> list[Row]:
    r = doc.get("result", doc)
    rules = r["comparison"]["rules"]
    precision = [x["precision"] for x in rules.values() if x["precision"] is not None]
    recall = [x["recall"] for x in rules.values() if x["recall"] is not None]
    perfect = sum(1 for x in rules.values() if x["precision"] == 1.0 and x["recall"] == 1.0)
    return [
        Row(
            "detection",
            "precision, lowest of the rules",
            f"{min(precision, default=float('nan')):.2f}",
            f"{len(precision)} rules raised alerts",
            "1.0",
            min(precision, default=0.0) == 1.0,
        ),
        Row(
            "detection",
            "recall, lowest of the rules",
            f"{min(recall, default=float('nan')):.2f}",
            f"{len(recall)} rules injected",
            "1.0",
            min(recall, default=0.0) == 1.0,
        ),
        Row(
            "detection",
            "rules at precision and recall 1.0",
            f"{perfect} of {len(rules)}",
            f"{r['simulation']['events']:,} events",
            "all",
            perfect == len(rules),
        ),
    ]


# -- the JSON ------------------------------------------------------------------------------------------------


def result_document(
    *,
    args: Mapping[str, Any],
    machine: Mapping[str, Any],
    code: Mapping[str, Any],
    started: datetime,
    elapsed_s: float,
    sections: Mapping[str, Any],
    errors: Mapping[str, str],
    rows: Iterable[Row],
    notes: Mapping[str, list[str]],
) -> dict[str, Any]:
    """What ``bench/results/run-*.json`` holds: the run, the machine, the commit, the table and the raw numbers."""
    return {
        "runner": "bench.run",
        "started_at": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 1),
        "args": dict(args),
        "machine": dict(machine),
        "code": dict(code),
        "table": [{**asdict(r), "verdict": r.verdict} for r in rows],
        "notes": {k: list(v) for k, v in notes.items()},
        "errors": dict(errors),
        "sections": dict(sections),
    }


# -- databases -------------------------------------------------------------------------------------------------


def fk_order(tables: Iterable[str], parents: Mapping[str, set[str]]) -> list[str]:
    """``tables`` with every table after the tables it references (among them), ties by name."""
    todo = set(tables)
    order: list[str] = []
    while todo:
        ready = sorted(t for t in todo if not (parents.get(t, set()) - {t}) & todo)
        if not ready:
            raise ValueError(f"foreign keys form a cycle among {sorted(todo)}")
        order += ready
        todo -= set(ready)
    return order


async def copy_tables(conn: asyncpg.Connection) -> list[str]:
    """The tables of the public schema that hold rows, but those filled before the worker runs, in FK order."""
    names = [
        str(n)
        for n in await conn.fetchval("SELECT array_agg(tablename::text) FROM pg_tables WHERE schemaname = 'public'")
        if n not in NOT_APPLIED
    ]
    filled = [n for n in names if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{n}")')]  # noqa: S608
    parents: dict[str, set[str]] = {}
    for child, parent in await conn.fetch(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
        "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
    ):
        parents.setdefault(child, set()).add(parent)
    return fk_order(filled, parents)


async def _dump(conn: asyncpg.Connection, table: str) -> tuple[list[bytes], int]:
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    status = await conn.copy_from_table(table, output=sink, format="binary")
    return chunks, int(status.split()[-1])


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# -- the requests of the end-to-end run -----------------------------------------------------------------------


def shape_windows(shape: str, batch: int, concurrency: int) -> tuple[int, timedelta]:
    """The windows a shape cuts the events into: at most this many events, covering less than this span."""
    if shape == "bulk":
        return BULK_WINDOW, BULK_SPAN
    return batch * concurrency * 2, runner.MAX_WINDOW


def requests(
    events: list[dict[str, Any]], poster_of: Mapping[str, str], batch: int, size: int, span: timedelta
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The requests that post ``events``: window by window (``runner.windows(events, size, span)``), each poster's
    events of a window (regulator events by the admin, an operator's by itself or its market) in requests of at
    most ``batch`` events, in order of the posters' first event in the window."""
    for window in runner.windows(events, size, span):
        groups: dict[str, list[dict[str, Any]]] = {}
        for e in window:
            regulator = e["event_type"].startswith("regulator.")
            groups.setdefault(runner.ADMIN if regulator else poster_of.get(e["operator"], runner.ADMIN), []).append(e)
        for poster, items in groups.items():
            for i in range(0, len(items), batch):
                yield poster, items[i : i + batch]


# -- the measuring session -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    events: str
    partitions: int
    produce_s: float


@dataclass
class Posted:
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)


class Session:
    """The broker, the simulation, the template database and everything started, stopped by ``close``."""

    def __init__(self, args: argparse.Namespace, tmp: Path, broker: EmbeddedBroker, sim: Simulation) -> None:
        self.args = args
        self.tmp = tmp
        self.broker = broker
        self.sim = sim
        self.dsn: str = args.database_dsn
        self.server_url: str = args.database_url
        self.admin_token = secrets.token_urlsafe(24)
        self.messages = [(e["operator"].encode(), orjson.dumps(e)) for e in sim.events]
        self.template = ""
        self.dbs: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.topics: dict[int, Topic] = {}
        self.kafka_admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)

    # databases

    def url(self, db: str) -> str:
        return f"{self.server_url}/{db}"

    async def prepare(self) -> None:
        """A migrated database with the simulation's operators registered through the API: the template."""
        await self.kafka_admin.start()
        self.template = await common.create_db(self.dsn, "run_template")
        self.dbs.append(self.template)
        await asyncio.to_thread(migrate, self.url(self.template))
        env = common.service_env(self.url(self.template), self.broker.bootstrap, TRACE_ADMIN_TOKEN=self.admin_token)
        api, base = await self.start_api(env, "register")
        try:
            t0 = time.monotonic()
            summary = runner.Summary("api")
            with ThreadPoolExecutor(self.args.concurrency) as pool:
                await asyncio.to_thread(runner.register, runner.Api(base), self.admin_token, self.sim, pool, summary)
            say(f"registered {summary.operators_registered:,} operators in {time.monotonic() - t0:.1f} s")
        finally:
            common.stop([api])

    async def fresh_db(self, prefix: str) -> str:
        """A new database cloned from the template, which is migrated first (a no-op unless migrations were
        added since: others commit while a long run goes on). The clone waits until the template is idle."""
        await asyncio.to_thread(migrate, self.url(self.template))
        name = f"{prefix}_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(self.dsn + "/postgres")
        try:
            for attempt in range(100):
                try:
                    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    break
                except asyncpg.ObjectInUseError:
                    if attempt == 99:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await admin.close()
        self.dbs.append(name)
        return name

    async def drop(self, db: str) -> None:
        if not self.args.keep:
            await common.drop_db(self.dsn, db)
            self.dbs.remove(db)

    # processes

    def spawn(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        proc = common.spawn(args, env, self.tmp / f"{log}.log")
        self.procs.append(proc)
        self.logs[proc.pid] = self.tmp / f"{log}.log"
        return proc

    def warnings(self, procs: Iterable[subprocess.Popen[bytes]]) -> dict[str, int]:
        """What the processes logged at warning level or above, by event; other output (a traceback) as lines."""
        counts: Counter[str] = Counter()
        for p in procs:
            log = self.logs[p.pid]
            for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
                try:
                    entry = json.loads(line)
                except ValueError:
                    counts["lines of other output"] += 1
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
                    counts[str(entry.get("event"))] += 1
        return dict(counts)

    def check(self, procs: Iterable[subprocess.Popen[bytes]]) -> None:
        """Fail when one of ``procs`` has exited, with the last line of its log."""
        for p in procs:
            if p.poll() is not None:
                log = self.logs[p.pid]
                lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                raise SectionError(f"{log.stem} exited with {p.returncode}: {lines[-1] if lines else 'no output'}")

    def env(self, db: str, topic: Topic, group: str, **extra: str) -> dict[str, str]:
        return common.service_env(
            self.url(db),
            self.broker.bootstrap,
            TRACE_ADMIN_TOKEN=self.admin_token,
            TRACE_TOPIC_EVENTS=topic.events,
            TRACE_TOPIC_DLQ=topic.events + ".dlq",
            TRACE_TOPIC_ALERTS=topic.events + ".alerts",
            TRACE_EVENTS_PARTITIONS=str(topic.partitions),
            TRACE_CONSUMER_GROUP=group,
            **GROUP,
            **extra,
        )

    async def start_api(self, env: dict[str, str], label: str) -> tuple[subprocess.Popen[bytes], str]:
        api, base = common.spawn_api(env, self.tmp / f"{label}-api.log")
        self.procs.append(api)
        self.logs[api.pid] = self.tmp / f"{label}-api.log"
        await common.wait_ready(base, timeout=60, procs=[api])
        return api, base

    async def close(self) -> None:
        common.stop(self.procs)
        await self.kafka_admin.close()
        for db in list(self.dbs):
            if self.args.keep:
                say(f"kept database {self.dsn}/{db}")
            else:
                await common.drop_db(self.dsn, db)

    # the broker

    async def new_topic(self, partitions: int) -> str:
        """An empty events topic (and its dead-letter and alert topics) of this many partitions."""
        name = f"run.{secrets.token_hex(3)}.p{partitions}"
        settings = Settings(
            kafka_bootstrap=self.broker.bootstrap,
            topic_events=name,
            topic_dlq=name + ".dlq",
            topic_alerts=name + ".alerts",
            events_partitions=partitions,
        )
        await ensure_topics(settings)
        return name

    async def topic(self, partitions: int) -> Topic:
        """A topic of this many partitions holding every message (produced once, timed)."""
        if partitions not in self.topics:
            name = await self.new_topic(partitions)
            seconds = await common.produce(self.broker.bootstrap, name, self.messages)
            say(f"produced {len(self.messages):,} messages to {partitions} partitions in {seconds:.1f} s")
            self.topics[partitions] = Topic(name, partitions, seconds)
        return self.topics[partitions]

    async def group_members(self, group: str) -> tuple[str, int]:
        """The consumer group's state and its number of members."""
        described = (await self.kafka_admin.describe_consumer_groups([group]))[0].groups[0]
        return str(described[2]), len(described[5])

    async def wait_group(self, group: str, members: int, procs: list[subprocess.Popen[bytes]]) -> None:
        """Wait until the group is stable with at least ``members`` members."""
        deadline = time.monotonic() + 60
        while True:
            state, joined = await self.group_members(group)
            if state == "Stable" and joined >= members:
                return
            self.check(procs)
            if time.monotonic() > deadline:
                raise SectionError(f"consumer group {group} not stable with {members} member(s) within 60 s")
            await asyncio.sleep(0.05)

    async def committed(self, group: str, topic: Topic) -> int:
        """Messages the group has committed: a worker commits right after the database commit of each batch."""
        partitions = [TopicPartition(topic.events, p) for p in range(topic.partitions)]
        offsets = await self.kafka_admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(max(0, o.offset) for o in offsets.values())

    async def wait_committed(
        self, group: str, topic: Topic, target: int, procs: list[subprocess.Popen[bytes]]
    ) -> tuple[float, float]:
        """Wait until the group has committed ``target`` messages: when it had (monotonic), and the longest
        stretch without progress meanwhile. Polls the broker, not the database, whose count would compete
        with the worker for the cores."""
        deadline = time.monotonic() + self.args.timeout
        last, last_t, stall = -1, time.monotonic(), 0.0
        while True:
            done = await self.committed(group, topic)
            now = time.monotonic()
            if done > last:
                stall, last, last_t = max(stall, now - last_t), done, now
            if done >= target:
                return now, stall
            self.check(procs)
            if now > deadline:
                raise SectionError(f"{done:,} of {target:,} messages committed in {self.args.timeout:.0f} s")
            await asyncio.sleep(0.1)

    # measurements

    async def apply(
        self, topic: Topic, workers: int, label: str, extra: Mapping[str, str], *, storage: bool = False
    ) -> tuple[dict[str, Any], str]:
        """``workers`` workers of a new group apply the topic into a fresh database; the figures and the database.

        The time runs from the start of the first transaction that applied events (the ``recorded_at`` of the
        first rows) to the commit of the last message, so the group join is not counted but the first batch is.
        With ``storage`` the figures include the database's size once the workers stopped (``storage_of``).
        """
        db = await self.fresh_db("run_apply")
        code = common.code_version()  # what the workers import
        group = f"run-{label}-{secrets.token_hex(3)}"
        env = self.env(db, topic, group, **extra)
        total = len(self.messages)
        procs: list[subprocess.Popen[bytes]] = []
        conn = await asyncpg.connect(f"{self.dsn}/{db}")
        try:
            spawned = time.time()
            procs = [self.spawn(["worker"], env, f"{label}-worker{i}") for i in range(workers)]
            names = ["worker"] if workers == 1 else [f"worker{i}" for i in range(workers)]
            pids = {n: p.pid for n, p in zip(names, procs, strict=True)}
            meter = common.CpuMeter({**pids, "broker": self.broker.pid, "bench": os.getpid()}, db)
            await self.wait_group(group, 1, procs)  # the first generation: the cores count from here
            meter.start()
            await self.wait_committed(group, topic, 1, procs)
            state, members = await self.group_members(group)
            done, stall = await self.wait_committed(group, topic, total, procs)
            done_wall = time.time() - (time.monotonic() - done)
            cpu = meter.stop()
            rss = {n: common.peak_rss_mb(pid) for n, pid in pids.items()}
            common.stop(procs)
            warnings = self.warnings(procs)
            first = float(await conn.fetchval("SELECT extract(epoch FROM min(recorded_at)) FROM events"))
            events = await common.count_events(conn)
            dead = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
            sizes = await self.storage_of(conn, events) if storage else None
        finally:
            common.stop(procs)
            await conn.close()
        seconds = done_wall - first
        result = {
            "workers": workers,
            "partitions": topic.partitions,
            "messages": total,
            "seconds": seconds,
            "events_per_s": total / seconds,
            "join_s": first - spawned,
            "group_state_at_first_commit": state,
            "members_at_first_commit": members,
            "max_stall_s": stall,
            "events": events,
            "dead_letters": dead,
            "cpu": cpu,
            "peak_rss_mb": rss,
            "log_warnings": warnings,
            "env": dict(extra),
            "code": code,
        }
        if sizes is not None:
            result["storage"] = sizes
        say(
            f"{label}: {result['events_per_s']:,.0f} events/s over {seconds:.1f} s (join {result['join_s']:.1f} s, "
            f"{members} member(s) at the first commit, {events:,} events, {dead} dead letters)"
        )
        return result, db

    async def storage_of(self, conn: asyncpg.Connection, events: int) -> dict[str, Any]:
        """The size of ``conn``'s database: in all, per event, of its largest tables (with their indexes and
        TOAST) and of the events table alone (its heap), next to the template's (catalogs and operators)."""
        database = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        template = int(await conn.fetchval("SELECT pg_database_size($1)", self.template))
        tables = await conn.fetch(
            "SELECT relname::text AS name, pg_total_relation_size(oid) AS bytes FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 2 DESC, 1 LIMIT $1",
            STORAGE_TABLES,
        )
        sizes = {
            "database_bytes": database,
            "events": events,
            "bytes_per_event": database / events if events else float("nan"),
            "events_table_bytes": int(await conn.fetchval("SELECT pg_relation_size('events')")),
            "template_bytes": template,
            "tables": {str(t["name"]): int(t["bytes"]) for t in tables},
            "autovacuum": str(await conn.fetchval("SHOW autovacuum")),
        }
        say(f"storage: {database / 2**20:,.0f} MB, {sizes['bytes_per_event']:,.0f} bytes/event")
        return sizes

    async def copy_limit(self, source: str) -> dict[str, Any]:
        """COPY out every row the worker wrote; time a COPY of them into a fresh clone, in one transaction."""
        src = await asyncpg.connect(f"{self.dsn}/{source}")
        try:
            tables = await copy_tables(src)
            dumps = {t: await _dump(src, t) for t in tables}
        finally:
            await src.close()
        target = await self.fresh_db("run_copy")
        dst = await asyncpg.connect(f"{self.dsn}/{target}")
        try:
            t0 = time.monotonic()
            async with dst.transaction():
                for t in tables:
                    await dst.copy_to_table(t, source=_replay(dumps[t][0]), format="binary")
            seconds = time.monotonic() - t0
        finally:
            await dst.close()
            await self.drop(target)
        rows = sum(n for _, n in dumps.values())
        say(f"COPY of {rows:,} rows into {len(tables)} tables: {seconds:.1f} s")
        return {
            "tables": {t: dumps[t][1] for t in tables},
            "bytes": sum(len(c) for chunks, _ in dumps.values() for c in chunks),
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "events_per_s": len(self.messages) / seconds,
        }

    async def post(
        self, base: str, keys: Mapping[str, str], todo: Iterable[tuple[str, list[dict[str, Any]]]]
    ) -> Posted:
        """Post the requests of ``todo`` (poster, events) in its order, each with the poster's key, keeping
        ``--concurrency`` in flight: the next request starts as soon as one returns, across window boundaries."""
        concurrency = self.args.concurrency
        posted = Posted()
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

            async def send(poster: str, items: list[dict[str, Any]]) -> None:
                try:
                    body = orjson.dumps(items)
                    headers = {"Authorization": f"Bearer {keys[poster]}", "Content-Type": "application/json"}
                    while True:
                        t0 = time.perf_counter()
                        r = await client.post("/v1/events", content=body, headers=headers)
                        posted.requests += 1
                        if r.status_code not in (429, 503):
                            break
                        posted.retries += 1
                        await asyncio.sleep(float(r.headers.get("retry-after") or 1))
                finally:
                    gate.release()
                if r.status_code in (200, 202):
                    posted.accepted += len(items)
                    posted.latencies_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    posted.rejected += len(items)
                    if len(posted.first_errors) < 5:
                        posted.first_errors.append(f"HTTP {r.status_code}: {r.text[:300]}")

            try:
                async with asyncio.TaskGroup() as tasks:
                    for poster, items in todo:
                        await gate.acquire()  # a slot is free: the next request starts
                        tasks.create_task(send(poster, items))
            except BaseExceptionGroup as failed:  # the first failure, as the caller expects it (httpx.HTTPError)
                raise failed.exceptions[0] from None
        return posted

    async def e2e(self, shape: str) -> dict[str, Any]:
        """The API and ``--e2e-workers`` workers on an empty topic and a fresh database; every event posted in the
        requests of ``shape`` (reporters or bulk), timed until applied."""
        label = f"e2e-{shape}"
        batch, concurrency = self.args.batch, self.args.concurrency
        size, span = shape_windows(shape, batch, concurrency)
        poster_of = {op.code: op.parent or op.code for op in self.sim.city.operators}
        topic = Topic(await self.new_topic(self.args.partitions), self.args.partitions, 0.0)
        db = await self.fresh_db(f"run_e2e_{shape}")
        code = common.code_version()  # what the API and the worker import
        group = f"run-{label}-{secrets.token_hex(3)}"
        env = self.env(db, topic, group)
        conn = await asyncpg.connect(f"{self.dsn}/{db}")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            api, base = await self.start_api(env, label)
            n_workers = max(1, getattr(self.args, "e2e_workers", 1))
            workers = [self.spawn(["worker"], env, f"{label}-worker{i}") for i in range(n_workers)]
            procs = [api, *workers]
            summary = runner.Summary("api")
            with ThreadPoolExecutor(self.args.concurrency) as pool:
                api_client = runner.Api(base)
                keys = await asyncio.to_thread(runner.issue_keys, api_client, self.admin_token, self.sim, pool, summary)
            keys[runner.ADMIN] = self.admin_token
            await self.wait_group(group, n_workers, procs)  # the join is not part of the figure
            say(
                f"{label}: {len(keys) - 1:,} keys issued, {n_workers} worker(s) joined; "
                f"posting {len(self.messages):,} events"
            )
            pids = {"api": api.pid, "broker": self.broker.pid, "bench": os.getpid()}
            pids |= {f"worker{i}": w.pid for i, w in enumerate(workers)}
            meter = common.CpuMeter(pids, db)
            meter.start()
            t0 = time.monotonic()
            posted = await self.post(base, keys, requests(self.sim.events, poster_of, batch, size, span))
            t_posted = time.monotonic()
            backlog = posted.accepted - await self.committed(group, topic)
            done, stall = await self.wait_committed(group, topic, posted.accepted, procs)
            cpu = meter.stop()
            cpu["worker_cores"] = sum(cpu.pop(f"worker{i}_cores") for i in range(n_workers))
            rss = {"api": common.peak_rss_mb(api.pid), "worker": max(common.peak_rss_mb(w.pid) for w in workers)}
            common.stop(procs)
            warnings = self.warnings(procs)
            events = await common.count_events(conn)
            dead = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
            intake_left = int(await conn.fetchval("SELECT count(*) FROM intake"))
        finally:
            common.stop(procs)
            await conn.close()
            await self.drop(db)
        seconds = done - t0
        result = {
            "shape": shape,
            "events": len(self.messages),
            "partitions": topic.partitions,
            "batch": batch,
            "concurrency": concurrency,
            "workers": n_workers,
            "window_events": size,
            "window_span_s": span.total_seconds(),
            "accepted": posted.accepted,
            "rejected": posted.rejected,
            "first_errors": posted.first_errors,
            "requests": posted.requests,
            "retries": posted.retries,
            "events_per_request": posted.accepted / max(1, len(posted.latencies_ms)),
            "post_s": t_posted - t0,
            "post_events_per_s": posted.accepted / (t_posted - t0),
            "post_ms": common.summary(posted.latencies_ms),
            "seconds": seconds,
            "events_per_s": posted.accepted / seconds,
            "backlog_at_last_post": backlog,
            "tail_s": done - t_posted,
            "events_applied": events,
            "dead_letters": dead,
            "intake_left": intake_left,
            "max_stall_s": stall,
            "cpu": cpu,
            "peak_rss_mb": rss,
            "log_warnings": warnings,
            "code": code,
        }
        say(
            f"{label}: {result['events_per_s']:,.0f} events/s, {result['events_per_request']:.1f} events a request "
            f"({posted.rejected} rejected, {posted.retries} retries)"
        )
        return result


# -- sections --------------------------------------------------------------------------------------------------


async def ingest(s: Session) -> dict[str, Any]:
    topic = await s.topic(s.args.partitions)
    produce = {
        "partitions": topic.partitions,
        "seconds": topic.produce_s,
        "events_per_s": len(s.messages) / topic.produce_s,
    }
    data: dict[str, Any] = {"events": len(s.messages), "produce": produce, "apply": {}}
    source = ""
    for mode in s.args.modes:
        result, db = await s.apply(topic, 1, f"apply-{mode}", MODES[mode], storage=not source)
        data["apply"][mode] = result
        if source:
            await s.drop(db)
        else:
            source = db  # the first mode's rows are the ones COPY'd, and measured
            data["storage"] = {**result.pop("storage"), "source_mode": mode}
    data["copy"] = {**await s.copy_limit(source), "source_mode": s.args.modes[0]}
    await s.drop(source)
    for shape in s.args.e2e_shapes:
        data[E2E_SHAPES[shape]] = await s.e2e(shape)
    return data


async def scale(s: Session) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for workers, partitions in SCALE_RUNS:
        try:
            result, db = await s.apply(await s.topic(partitions), workers, f"scale-{workers}w{partitions}p", {})
        except SectionError as exc:  # the other runs still tell something
            say(f"scale: {workers} workers on {partitions} partitions failed: {exc}")
            runs.append({"workers": workers, "partitions": partitions, "error": str(exc)})
            continue
        await s.drop(db)
        runs.append(result)
    return {"events": len(s.messages), "runs": runs}


def sub_bench(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run ``python -m bench.<name> --out FILE`` (its output on our stderr); the JSON it wrote."""
    out = tmp / f"{name}.json"
    extra = [*(QUICK_ARGS if args.quick else FULL_ARGS)[name], *shlex.split(getattr(args, f"{name}_args") or "")]
    cmd = [
        sys.executable,
        "-m",
        f"bench.{name}",
        "--out",
        str(out),
        "--database-dsn",
        args.database_dsn,
        "--database-url",
        args.database_url,
        *extra,
    ]
    say(f"{name}: {shlex.join(cmd[1:])}")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
    try:
        code = proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGINT)  # let it drop its database and stop its processes
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if code != 0 or not out.exists():
        raise SectionError(f"python -m bench.{name} exited with {code}")
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def epcis_rows(doc: Mapping[str, Any]) -> list[Row]:
    r = doc.get("result", doc)
    c, v, q = r["capture"], r["validate"], r["query"]
    m = q["MATCH_anyEPC"]["http_ms"]
    return [
        Row(
            "epcis",
            "capture end to end, documents of 1,000",
            f"{c['events_per_s']:,.0f} events/s",
            f"validate only {v['events_per_s']:,.0f} events/s",
            f"≥ {GOAL_EPCIS_CAPTURE:,}",
            c["events_per_s"] >= GOAL_EPCIS_CAPTURE,
        ),
        Row(
            "epcis",
            f"MATCH_anyEPC on one lot p50 / p99, {q['rows']:,} rows",
            _ms(m["p50"], m["p99"]),
            f"SQL p50 {q['sql_ms']['p50']:.2f} ms",
            f"p50 ≤ {GOAL_EPCIS_QUERY_P50_MS:.0f} ms at 1 M",
            m["p50"] <= GOAL_EPCIS_QUERY_P50_MS if q["rows"] >= 1_000_000 else None,
        ),
    ]


SUB_ROWS = {"lineage": lineage_rows, "alerts": alerts_rows, "detection": detection_rows, "epcis": epcis_rows}


# -- the run ---------------------------------------------------------------------------------------------------


def machine(postgres: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": round(mem_kb / 2**20, 1),
        "postgres": postgres,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }


async def postgres_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn + "/postgres")
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, tmp: Path, sections: dict[str, Any], errors: dict[str, str]) -> None:
    """The sections that need the broker and the simulation: ingest and scale."""
    wanted = [name for name in ("ingest", "scale") if name in args.only]
    if not wanted:
        return
    t0 = time.monotonic()
    sim = simulate(build_city(args.seed, args.scale), days=args.days)
    say(
        f"simulated {args.days} day(s) of a {args.scale} city: {len(sim.events):,} events "
        f"in {time.monotonic() - t0:.1f} s"
    )
    broker = EmbeddedBroker.start(log_file=tmp / "broker.log")
    session = Session(args, tmp, broker, sim)
    try:
        await session.prepare()
        for name in wanted:
            say(f"== {name}")
            try:
                sections[name] = await (ingest if name == "ingest" else scale)(session)
            except (RuntimeError, OSError, asyncpg.PostgresError, httpx.HTTPError, KafkaError) as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} failed: {errors[name]}")
    finally:
        await session.close()
        broker.stop()


def measured_steps(sections: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The steps that started service processes, by name, in order: their results carry the code they ran."""
    ingest, scale = sections.get("ingest", {}), sections.get("scale", {})
    steps = [(f"apply {mode}", a) for mode, a in ingest.get("apply", {}).items()]
    steps += [(f"e2e {shape}", ingest[key]) for shape, key in E2E_SHAPES.items() if key in ingest]
    steps += [(f"scale {r['workers']}w/{r['partitions']}p", r) for r in scale.get("runs", []) if "error" not in r]
    return steps


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="The project's single benchmark runner: a table on stdout, JSON in bench/results/.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    add("--quick", action="store_true", help="small sizes everywhere: a smoke run of a few minutes")
    add(
        "--scale",
        choices=["tiny", "small", "city"],
        help="simulated city of ingest and scale (default city; quick: small)",
    )
    add("--days", type=int, default=1, help="simulated days (default 1)")
    add("--seed", type=int, default=1, help="simulation seed (default 1)")
    add(
        "--modes",
        default="on",
        help="worker apply modes: on (rules on, default settings), off (rules and market off); default on",
    )
    add("--partitions", type=int, default=4, help="partitions of the ingest topic (default 4, the service's default)")
    add(
        "--e2e-shapes",
        default=",".join(E2E_SHAPES),
        help="end-to-end shapes, each on its own database: reporters (the simulator's requests, window by window "
        f"of simulated time), bulk (windows of {BULK_WINDOW:,} events, full requests); default %(default)s",
    )
    add(
        "--e2e-workers",
        type=int,
        default=2,
        help="workers (one consumer group) in e2e (default 2: one worker's transaction is serial, Python then "
        "Postgres, so on 2 cores a second worker fills the gaps; the scale section measures 1, 2 and 4)",
    )
    add("--batch", type=int, default=1000, help="at most this many events per POST in e2e (default 1000)")
    add("--concurrency", type=int, default=4, help="POSTs in flight in e2e, and registration threads (default 4)")
    add("--timeout", type=float, default=900, help="seconds to wait for a worker to apply everything (default 900)")
    add("--lineage-args", help="more options for bench.lineage, e.g. '--lots 20000' (later ones win)")
    add("--alerts-args", help="more options for bench.alerts, e.g. '--skip-latency'")
    add("--detection-args", help="more options for bench.detection, e.g. '--anomalies 0.05'")
    add("--epcis-args", help="more options for bench.epcis, e.g. '--rows 200000'")
    add("--keep", action="store_true", help="keep the databases and the logs (their names are printed)")
    common.add_runner_options(parser, "run")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.e2e_shapes = [m.strip() for m in args.e2e_shapes.split(",") if m.strip()]
    if unknown := [s for s in args.only if s not in SECTIONS]:
        parser.error(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    if unknown := [m for m in args.modes if m not in MODES]:
        parser.error(f"unknown mode(s) {unknown}; choose from {','.join(MODES)}")
    if not args.modes:
        parser.error("--modes needs at least one mode")
    if args.e2e_workers < 1:
        parser.error("--e2e-workers must be at least 1")
    if unknown := [m for m in args.e2e_shapes if m not in E2E_SHAPES]:
        parser.error(f"unknown e2e shape(s) {unknown}; choose from {','.join(E2E_SHAPES)}")
    args.scale = args.scale or ("small" if args.quick else "city")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except KeyboardInterrupt:
        say("interrupted: processes stopped, databases dropped, nothing written")
        return 130


def run(args: argparse.Namespace) -> int:
    configure_logging("console", "warning")  # topic creation here logs nothing on stdout
    signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    started = datetime.now(UTC)
    code = common.code_version()
    tmp = Path(tempfile.mkdtemp(prefix="trace-run-"))
    say(f"sections {','.join(args.only)}{' (quick)' if args.quick else ''}; logs in {tmp}")
    sections: dict[str, Any] = {}
    errors: dict[str, str] = {}
    box = machine(asyncio.run(postgres_version(args.database_dsn)))
    asyncio.run(measure(args, tmp, sections, errors))
    for name in SUB_ROWS:
        if name in args.only:
            say(f"== {name}")
            try:
                sections[name] = sub_bench(name, args, tmp)
            except (SectionError, OSError, ValueError) as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} failed: {errors[name]}")

    rows: list[Row] = []
    notes: dict[str, list[str]] = {}
    if "ingest" in sections:
        rows += ingest_rows(sections["ingest"])
        notes["ingest"] = ingest_notes(sections["ingest"])
    if "scale" in sections:
        rows += scale_rows(sections["scale"])
        notes["scale"] = scale_notes(sections["scale"], os.cpu_count() or 1)
    for name, build in SUB_ROWS.items():
        if name in sections:
            try:
                rows += build(sections[name])
            except (KeyError, TypeError) as exc:
                errors[name] = f"its JSON lacks a figure: {type(exc).__name__}: {exc}"
    for name, message in errors.items():
        rows.append(Row(name, "error", "failed", "see the note"))
        notes.setdefault(name, []).append(message)
    after = common.code_version()
    if after != code:
        steps = [name for name, step in measured_steps(sections) if step.get("code") != code]
        notes.setdefault("run", []).append(
            "trace_service changed during the run: the figures mix versions"
            + (f" ({', '.join(steps)} ran on another than the first)" if steps else "")
        )
    doc = result_document(
        args=vars(args),
        machine=box,
        code={**code, "after": after} if after != code else code,
        started=started,
        elapsed_s=time.monotonic() - _T0,
        sections=sections,
        errors=errors,
        rows=rows,
        notes=notes,
    )
    out = common.write_result("run", doc, args.out)
    title = (
        f"bench.run{' --quick' if args.quick else ''}: {box['cpus']} cores ({box['cpu_model']}), {box['ram_gb']} GB, "
        f"PostgreSQL {box['postgres']}, Python {box['python']}, commit {code.get('commit')}"
        + (" + changes" if code.get("changed") else "")
    )
    print(f"\n{title}\n{format_table(rows, notes)}\n\nwritten: {out}")
    failed = bool(errors) or any("error" in r for r in sections.get("scale", {}).get("runs", []))
    if args.keep or failed:
        say(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
