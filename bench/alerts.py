"""Alert benchmark: latency from a triggering event's 202 to its alert, under load; and what the rules cost.

Measured in one run on the same machine:

* ``latency``   the API and one worker (rules on) run while a steady background load of normal chains
                (``pig_chain`` and ``produce_chain`` instantiated with fresh tags, their operators
                registered in advance) is posted at ``--rate`` events/s in ``--batch``-event batches.
                Every ``--interval`` s one ``slaughter.asf_tested`` with ``result: positive`` is posted on
                the batch lot of a pig chain loaded beforehand; from the 202 of that POST (t0) it measures
                (a) the first ``GET /v1/alerts/{id}`` that answers 200 (polled every ``--poll-ms`` by a
                separate client) and (b) the arrival of the ``alert`` event with that id on the SSE stream
                (``GET /v1/alerts/stream``, one client connected before the run). p50 / p99 / max of both,
                the background rate achieved, the worker's backlog at the end, the CPU each process used.
* ``cost``      the same events for every mode (instantiated normal chains, the realistic mix) are
                produced straight to a topic; a worker applies them into a fresh database, timed from the
                first applied row to the last (the first batch, committed at once, is left out). Modes:
                ``on`` (``TRACE_RULE_ENABLED=true``, ``TRACE_MARKET_ENABLED=true``: integrity and market
                rules) and ``off`` (both false; the graph and market-figure projections still run), each
                on its own fresh database, ``--cost-runs`` pairs in alternating order, medians.
                cost = 1 - on/off. ``--modes on,off,integrity,market`` also splits it by rule family.
* ``split``     for each sample, the alert's ``created_at`` (``now()`` of the worker transaction that judged
                the trigger) splits the GET latency into waiting for that transaction (Kafka, consumer
                fetch, the batch before) and the transaction itself (apply + rules + commit).

Goals (issue 4): alert latency p99 ≤ 1 s on both paths; the rules cost at most 20 % of apply throughput.

Usage: ``python -m bench.alerts`` (about 4 minutes on 2 cores; ``--samples`` and ``--events`` size it).
Starts an embedded broker, uses the Postgres server at ``--database-dsn`` (fresh databases are created and
dropped), starts the API and the workers as child processes. Prints a table and writes JSON to
``bench/results/`` (or to ``--out PATH``). ``--py-spy DIR`` also records the worker and the API with py-spy
(flame graphs) during the latency window, and the worker in each apply mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import (
    CpuMeter,
    add_runner_options,
    code_version,
    count_events,
    create_db,
    drop_db,
    goal,
    peak_rss_mb,
    produce,
    py_spy,
    service_env,
    spawn,
    spawn_api,
    stop,
    stop_spy,
    summary,
    wait_events,
    wait_ready,
    write_result,
)
from trace_service.alerts.models import alert_id
from trace_service.chain import scenarios
from trace_service.chain.scenarios import ear_tags_in, replace_strings
from trace_service.contract.events import build_catalogue, canonical_bytes
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker
from trace_service.settings import Settings

GOAL_P99_S = 1.0
GOAL_COST = 0.20
COST_TOPIC = "bench.alerts.cost"
# What "rules on" and "off" mean for the worker: the integrity rules (TRACE_RULE_ENABLED) and the market
# supply rules (TRACE_MARKET_ENABLED); the projections (graph, market figures) run in every mode.
MODES = {
    "on": {"TRACE_RULE_ENABLED": "true", "TRACE_MARKET_ENABLED": "true"},
    "off": {"TRACE_RULE_ENABLED": "false", "TRACE_MARKET_ENABLED": "false"},
    "integrity": {"TRACE_RULE_ENABLED": "true", "TRACE_MARKET_ENABLED": "false"},
    "market": {"TRACE_RULE_ENABLED": "false", "TRACE_MARKET_ENABLED": "true"},
}
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- normal chains ------------------------------------------------------------------------------------


def _base36(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, d = divmod(n, 36)
        out = ALPHABET[d] + out
    if n:
        raise ValueError("counter overflow")
    return out


@dataclass
class Chain:
    kind: str
    events: list[dict[str, Any]]
    batch_lot: str | None  # the slaughter batch of a pig chain
    slaughterhouse: str | None


@dataclass
class Chains:
    """Instantiated normal chains whose operators come from a fixed pool (a city has a few hundred operators
    trading many chains each, not one set of operators per chain). Lots, vouchers, certificates and event
    ids are unique per chain (``scenarios.instantiate``); ear tags are renumbered from a counter so that no
    two chains share one (``instantiate`` derives them from a hash, which collides at tens of thousands)."""

    pools: int
    tag_start: int = 0
    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tag: int = 0
    _ear: int = 0
    operators: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = {name: scenarios.load(name) for name in ("pig_chain", "produce_chain")}
        self._tag = self.tag_start
        seen: set[str] = set()
        for p in range(self.pools):
            tag = self._pool_tag(p)
            for sc in self.base.values():
                for op in scenarios.instantiate({"operators": sc["operators"], "events": []}, tag)["operators"]:
                    if op["code"] not in seen:
                        seen.add(op["code"])
                        self.operators.append(op)

    @staticmethod
    def _pool_tag(p: int) -> str:
        return "Z" + _base36(p, 3)

    def make(self, kind: str) -> Chain:
        tag = _base36(self._tag, 4)
        self._tag += 1
        pool = self._pool_tag(self._tag % self.pools)
        sc = self.base[kind]
        inst = scenarios.instantiate(sc, tag)
        mapping = {op["code"] + tag: op["code"] + pool for op in sc["operators"]}
        for ear in dict.fromkeys(ear_tags_in(inst["events"])):
            mapping[ear] = f"{ear[:7]}{self._ear % (10**8 - 1) + 1:08d}"
            self._ear += 1
        events = replace_strings(inst["events"], mapping)
        m = inst["mapping"]
        if kind == "pig_chain":
            return Chain(kind, events, m["SLBATCH0001"], "442000100001" + pool)
        return Chain(kind, events, None, None)

    def mix(self, pig_share: float) -> Iterator[Chain]:
        """An endless stream of chains, ``pig_share`` of them pig chains (evenly interleaved)."""
        acc = 0.0
        while True:
            acc += pig_share
            if acc >= 1.0:
                acc -= 1.0
                yield self.make("pig_chain")
            else:
                yield self.make("produce_chain")


def _asf_positive(chain: Chain) -> dict[str, Any]:
    """The trigger: a confirmatory PCR on the batch comes back positive (asf_positive fires at once)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "slaughter.asf_tested",
        "occurred_at": "2026-11-25T09:00:00+08:00",
        "operator": chain.slaughterhouse,
        "data": {
            "lot": chain.batch_lot,
            "method": "pcr",
            "result": "positive",
            "sampled_at": "2026-11-25T08:30:00+08:00",
        },
    }


# -- measuring helpers ----------------------------------------------------------------------------------


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late this process's event loop wakes up: the measuring client's own error."""
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - t - 0.01)


async def _analyzer(dsn: str, every: float, stop: asyncio.Event, took: list[float]) -> None:
    """``ANALYZE`` the database every ``every`` s: what autovacuum does for a database that has been running
    a while, and what a fresh one lacks for its first minutes (plans made without statistics)."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            t = time.monotonic()
            await conn.execute("ANALYZE")
            took.append(time.monotonic() - t)
    finally:
        await conn.close()


_TABLE_STATS = """
SELECT relname, n_live_tup, last_autoanalyze IS NOT NULL OR last_analyze IS NOT NULL AS analyzed
FROM pg_stat_user_tables WHERE relname = ANY($1::text[]) ORDER BY relname
"""
_HOT_TABLES = ["ear_tags", "edges", "events", "lot_facts", "lots", "shipment_lines", "shipments"]


async def _table_stats(conn: asyncpg.Connection) -> dict[str, Any]:
    """Rows of the tables the rules read, and whether Postgres had statistics on them (else plans guess)."""
    return {r["relname"]: {"rows": r["n_live_tup"], "analyzed": r["analyzed"]} for r in await conn.fetch(
        _TABLE_STATS, _HOT_TABLES)}  # fmt: skip


def _env(args: argparse.Namespace, broker: EmbeddedBroker, dbname: str, **extra: str) -> dict[str, str]:
    url = f"{args.database_url}/{dbname}"
    return service_env(url, broker.bootstrap, TRACE_EVENTS_PARTITIONS=str(args.partitions), **extra)


async def _post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> None:
    while True:
        r = await client.post("/v1/events", content=body, headers=headers)
        if r.status_code == 503:
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            continue
        if r.status_code != 202:
            raise RuntimeError(f"POST answered {r.status_code}: {r.text[:300]}")
        return


# -- 1. latency under load ------------------------------------------------------------------------------


@dataclass
class Load:
    """The background: normal chains posted at a steady rate until stopped."""

    chains: Iterator[Chain]
    rate: float
    batch: int
    concurrency: int = 8
    accepted: list[tuple[float, int]] = field(default_factory=list)  # (monotonic at the 202, events)
    late_slots: int = 0
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def next_body(self) -> tuple[bytes, int]:
        while len(self._pending) < self.batch:
            self._pending.extend(next(self.chains).events)
        out, self._pending = self._pending[: self.batch], self._pending[self.batch :]
        return orjson.dumps(out), len(out)

    def prepare(self, batches: int) -> list[tuple[bytes, int]]:
        return [self.next_body() for _ in range(batches)]

    async def run(self, client: httpx.AsyncClient, headers: dict[str, str], ready: list[tuple[bytes, int]],
                  stop: asyncio.Event) -> None:  # fmt: skip
        slots = asyncio.Semaphore(self.concurrency)
        interval = self.batch / self.rate
        tasks: set[asyncio.Task[None]] = set()
        queue = iter(ready)

        async def one(body: bytes, n: int) -> None:
            try:
                await _post(client, body, headers)
                self.accepted.append((time.monotonic(), n))
            finally:
                slots.release()

        due = time.monotonic()
        while not stop.is_set():
            body, n = next(queue, None) or self.next_body()
            await slots.acquire()
            task = asyncio.create_task(one(body, n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += interval
            now = time.monotonic()
            if due < now - 1.0:  # more than a second behind: the slots were full; do not burst to catch up
                self.late_slots += 1
                due = now
            await asyncio.sleep(max(0.0, due - now))
        await asyncio.gather(*tasks)

    def rate_between(self, t0: float, t1: float) -> float:
        return sum(n for t, n in self.accepted if t0 <= t <= t1) / (t1 - t0)


class SseWatch:
    """One SSE client: the first time each alert id arrives."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.connected = asyncio.Event()
        self.events = 0

    def expect(self, aid: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if aid in self.seen:
            fut.set_result(self.seen[aid])
        else:
            self.waiters[aid] = fut
        return fut

    async def run(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        async with client.stream("GET", "/v1/alerts/stream", headers=headers) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"stream answered {resp.status_code}")
            kind = None
            async for line in resp.aiter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "alert":
                    at = time.monotonic()
                    self.events += 1
                    aid = orjson.loads(line[5:])["id"]
                    if aid not in self.seen:
                        self.seen[aid] = at
                        fut = self.waiters.pop(aid, None)
                        if fut is not None and not fut.done():
                            fut.set_result(at)
                elif not line:
                    kind = None


async def _poll_visible(client: httpx.AsyncClient, headers: dict[str, str], aid: str, poll_s: float,
                        timeout: float) -> tuple[float | None, int, dict[str, Any]]:  # fmt: skip
    """The monotonic time GET /v1/alerts/{id} first answered 200, how many requests it took, and the alert."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        r = await client.get(f"/v1/alerts/{aid}", headers=headers)
        n += 1
        if r.status_code == 200:
            return time.monotonic(), n, r.json()
        if r.status_code != 404:
            raise RuntimeError(f"GET /v1/alerts/{aid} answered {r.status_code}: {r.text[:200]}")
        await asyncio.sleep(poll_s)
    return None, n, {}


async def _register(client: httpx.AsyncClient, headers: dict[str, str], operators: list[dict[str, Any]]) -> None:
    pending = list(operators)
    done: set[str] = set()
    while pending:
        ready = [op for op in pending if not op.get("parent") or op["parent"] in done]
        if not ready:
            raise RuntimeError(f"operators with unknown parents: {pending[:3]}")

        async def one(op: dict[str, Any]) -> None:
            r = await client.post("/v1/operators", json=op, headers=headers)
            if r.status_code not in (201, 409):
                raise RuntimeError(f"POST /v1/operators answered {r.status_code}: {r.text[:300]}")

        for i in range(0, len(ready), 16):
            await asyncio.gather(*(one(op) for op in ready[i : i + 16]))
        done.update(op["code"] for op in ready)
        pending = [op for op in pending if op["code"] not in done]


async def latency(args: argparse.Namespace, broker: EmbeddedBroker, tmp: Path) -> dict[str, Any]:
    dbname = await create_db(args.database_dsn, "trace_bench_alerts")
    token = secrets.token_urlsafe(24)
    env = _env(args, broker, dbname, TRACE_ADMIN_TOKEN=token, **MODES["on"])
    settings = Settings(
        database_url=env["TRACE_DATABASE_URL"], kafka_bootstrap=broker.bootstrap, events_partitions=args.partitions
    )
    await asyncio.to_thread(migrate, settings.database_url)
    await ensure_topics(settings)
    conn = await asyncpg.connect(f"{args.database_dsn}/{dbname}")
    procs: list[subprocess.Popen[bytes]] = []
    spies: list[subprocess.Popen[bytes]] = []
    out: dict[str, Any] = {"database": dbname}
    auth = {"Authorization": f"Bearer {token}"}
    post_headers = {**auth, "content-type": "application/json"}
    try:
        api, base = spawn_api(env, tmp / "api.log")
        worker = spawn(["worker"], env, tmp / "worker.log")
        procs += [api, worker]
        await wait_ready(base, procs=procs)
        timeout = httpx.Timeout(30.0, read=None)
        async with (
            httpx.AsyncClient(base_url=base, timeout=timeout) as setup,
            httpx.AsyncClient(base_url=base, timeout=timeout) as load_client,
            httpx.AsyncClient(base_url=base, timeout=timeout) as trigger_client,
            httpx.AsyncClient(base_url=base, timeout=timeout) as poll_client,
            httpx.AsyncClient(base_url=base, timeout=timeout) as sse_client,
        ):
            chains = Chains(pools=args.pools)
            t = time.monotonic()
            await _register(setup, auth, chains.operators)
            out["operators"] = len(chains.operators)
            out["register_s"] = time.monotonic() - t

            # The chains the triggers will hit, loaded (and applied) before measuring.
            warm_triggers = args.warmup_triggers
            targets = [chains.make("pig_chain") for _ in range(args.samples + warm_triggers)]
            flat = [e for c in targets for e in c.events]
            bodies = [orjson.dumps(flat[i : i + 500]) for i in range(0, len(flat), 500)]
            for i in range(0, len(bodies), 4):
                await asyncio.gather(*(_post(setup, b, post_headers) for b in bodies[i : i + 4]))
            await wait_events(conn, len(flat), 300)
            out["preloaded_events"] = len(flat)

            load = Load(chains.mix(args.pig_share), args.rate, args.batch)
            window = args.warmup + (args.samples + warm_triggers) * args.interval + 15
            ready = load.prepare(int(window * args.rate / args.batch) + 1)

            sse = SseWatch()
            sse_task = asyncio.create_task(sse.run(sse_client, auth))
            await asyncio.wait_for(sse.connected.wait(), 10)
            await asyncio.sleep(0.5)  # the stream subscribes to the hub right after its first comment

            stop_load = asyncio.Event()
            lags: list[float] = []
            lag_task = asyncio.create_task(_loop_lag(stop_load, lags))
            load_task = asyncio.create_task(load.run(load_client, post_headers, ready, stop_load))
            analyzed: list[float] = []
            analyze_task = (
                asyncio.create_task(_analyzer(f"{args.database_dsn}/{dbname}", args.analyze_every, stop_load, analyzed))
                if args.analyze_every
                else None
            )
            await asyncio.sleep(args.warmup)

            meter = CpuMeter({"api": api.pid, "worker": worker.pid, "broker": broker.pid, "bench": os.getpid()}, dbname)
            meter.start()
            t_window0 = time.monotonic()
            count0 = await count_events(conn)
            if args.py_spy:
                spy = py_spy(worker.pid, int(args.samples * args.interval), Path(args.py_spy) / "worker-latency.svg")
                spies += [spy] if spy else []
                spy = py_spy(api.pid, int(args.samples * args.interval), Path(args.py_spy) / "api-latency.svg")
                spies += [spy] if spy else []

            samples: list[dict[str, Any]] = []
            poll_s = args.poll_ms / 1000

            async def sample(i: int, chain: Chain) -> None:
                assert chain.batch_lot is not None
                aid = alert_id("asf_positive", "lot", chain.batch_lot)
                fut = sse.expect(aid)
                body = orjson.dumps([_asf_positive(chain)])
                t_post = time.monotonic()
                await _post(trigger_client, body, post_headers)
                t0, t0_wall = time.monotonic(), time.time()
                seen, polls, alert = await _poll_visible(poll_client, auth, aid, poll_s, args.sample_timeout)
                # The alert's created_at is now() of the worker transaction that judged the trigger: it splits
                # the latency into waiting for that transaction to start and the transaction itself.
                txn_start = datetime.fromisoformat(alert["created_at"]) if alert else None
                try:
                    streamed = await asyncio.wait_for(fut, args.sample_timeout)
                except TimeoutError:
                    streamed = None
                samples.append(
                    {
                        "i": i,
                        "alert": aid,
                        "post_ms": (t0 - t_post) * 1000,
                        "get_s": None if seen is None else seen - t0,
                        "sse_s": None if streamed is None else streamed - t0,
                        "polls": polls,
                        "txn_start": txn_start,
                        "to_txn_s": None if txn_start is None else txn_start.timestamp() - t0_wall,
                        "txn_s": None
                        if seen is None or txn_start is None
                        else seen - t0 + t0_wall - txn_start.timestamp(),
                    }
                )

            tasks = []
            start = time.monotonic()
            for i, chain in enumerate(targets):
                await asyncio.sleep(max(0.0, start + i * args.interval - time.monotonic()))
                tasks.append(asyncio.create_task(sample(i, chain)))
            await asyncio.gather(*tasks)
            t_window1 = time.monotonic()
            count1 = await count_events(conn)
            cpu = meter.stop()
            stop_load.set()
            await load_task
            await lag_task
            if analyze_task is not None:
                await analyze_task
            for spy in spies:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)

            posted = sum(n for _, n in load.accepted)
            total = len(flat) + posted + len(targets)
            t_end = time.monotonic()
            backlog_end = total - await count_events(conn)
            drained = await wait_events(conn, total, 120)
            sse_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await sse_task

            measured = [s for s in samples if s["i"] >= warm_triggers]
            # How many events the transaction that judged each trigger applied (recorded_at is its now()).
            sizes = dict(await conn.fetch("SELECT recorded_at, count(*) FROM events GROUP BY 1"))
            for s in samples:
                s["txn_events"] = int(sizes.get(s.pop("txn_start"), 0)) if s.get("txn_start") else None
            get_s = [s["get_s"] for s in measured if s["get_s"] is not None]
            sse_s = [s["sse_s"] for s in measured if s["sse_s"] is not None]
            out.update(
                {
                    "samples": len(measured),
                    "get": summary(get_s),
                    "sse": summary(sse_s),
                    "get_missing": sum(s["get_s"] is None for s in measured),
                    "sse_missing": sum(s["sse_s"] is None for s in measured),
                    "to_txn": summary([s["to_txn_s"] for s in measured if s["to_txn_s"] is not None]),
                    "txn": summary([s["txn_s"] for s in measured if s["txn_s"] is not None]),
                    "txn_events": summary([s["txn_events"] for s in measured if s["txn_events"] is not None]),
                    "trigger_post_ms": summary([s["post_ms"] for s in measured]),
                    "polls_per_sample": statistics.fmean(s["polls"] for s in measured),
                    "target_rate": args.rate,
                    "background_rate": load.rate_between(t_window0, t_window1),
                    "background_events": posted,
                    "late_slots": load.late_slots,
                    "applied_rate_window": (count1 - count0) / (t_window1 - t_window0),
                    "backlog_at_end": backlog_end,
                    "drain_s": drained - t_end,
                    "window_s": t_window1 - t_window0,
                    "cpu": cpu,
                    "bench_loop_lag_ms": {k: v * 1000 for k, v in summary(lags).items() if k != "n"},
                    "sse_events": sse.events,
                    "alerts_by_rule": dict(
                        Counter(dict(await conn.fetch("SELECT rule, count(*) FROM alerts GROUP BY rule")))
                    ),
                    "dead_letters": int(await conn.fetchval("SELECT count(*) FROM dead_letters")),
                    "analyze_runs_s": analyzed,
                    "table_stats": await _table_stats(conn),
                    "worker_peak_rss_mb": peak_rss_mb(worker.pid),
                    "api_peak_rss_mb": peak_rss_mb(api.pid),
                    "raw_samples": samples,
                }
            )
    finally:
        for spy in spies:
            stop_spy(spy)
        stop(procs)
        await conn.close()
        if not args.keep:
            await drop_db(args.database_dsn, dbname)
    return out


async def _delivery(bootstrap: str, fetch_max_wait_ms: int, n: int) -> dict[str, float]:
    """Raw limit of the Kafka hop: produce (acks=all) → a consumer's getmany, one message every 50 ms, with the
    given fetch_max_wait_ms (500 is aiokafka's default, which the worker keeps)."""
    topic = f"bench.alerts.delivery.{fetch_max_wait_ms}"
    await ensure_topics(Settings(kafka_bootstrap=bootstrap, topic_events=topic, events_partitions=4))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"{topic}.{secrets.token_hex(2)}", auto_offset_reset="earliest",
        enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    sent: dict[bytes, float] = {}
    took: list[float] = []

    async def consume() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    if m.value in sent:
                        took.append(now - sent.pop(m.value))

    task = asyncio.create_task(consume())
    try:
        await producer.send_and_wait(topic, b"warm", key=b"w")
        await asyncio.sleep(3)  # the group join
        for i in range(n):
            value = f"m{i}".encode()
            sent[value] = time.monotonic()
            await producer.send_and_wait(topic, value, key=str(i % 8).encode())
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()
    return summary(took)


# -- 2. rule cost ---------------------------------------------------------------------------------------


async def _apply_once(
    args: argparse.Namespace, broker: EmbeddedBroker, tmp: Path, n: int, mode: str, run: int
) -> dict[str, Any]:
    dbname = await create_db(args.database_dsn, f"trace_bench_cost_{mode}")
    env = _env(
        args, broker, dbname, **MODES[mode],
        TRACE_TOPIC_EVENTS=COST_TOPIC,
        TRACE_CONSUMER_GROUP=f"bench-cost-{mode}-{run}-{secrets.token_hex(2)}",
    )  # fmt: skip
    await asyncio.to_thread(migrate, env["TRACE_DATABASE_URL"])
    conn = await asyncpg.connect(f"{args.database_dsn}/{dbname}")
    worker: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        worker = spawn(["worker"], env, tmp / f"worker-cost-{mode}-{run}.log")
        while await count_events(conn) == 0:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {tmp}")
            if time.monotonic() - t0 > 120:
                raise RuntimeError("the worker applied nothing within 120 s")
            await asyncio.sleep(0.01)
        t_first = time.monotonic()
        first = await count_events(conn)  # the first batch is committed at once: time the rows after it
        if args.py_spy and run == 0:
            spy = py_spy(worker.pid, 120, Path(args.py_spy) / f"worker-apply-{mode}.svg")
        meter = CpuMeter({"worker": worker.pid}, dbname)
        meter.start()
        applied = asyncio.Event()
        analyzed: list[float] = []
        analyzer = (
            asyncio.create_task(_analyzer(f"{args.database_dsn}/{dbname}", args.analyze_every, applied, analyzed))
            if args.analyze_every
            else None
        )
        try:
            t_done = await wait_events(conn, n, 600, interval=0.02)
        finally:
            applied.set()
            if analyzer is not None:
                await analyzer
        cpu = meter.stop()
        elapsed = t_done - t_first
        alerts = dict(await conn.fetch("SELECT rule, count(*) FROM alerts GROUP BY rule"))
        return {
            "mode": mode,
            "run": run,
            "events_per_s": (n - first) / elapsed if n > first else float("nan"),
            "apply_s": elapsed,
            "first_batch_rows": first,
            "join_s": t_first - t0,
            "cpu": cpu,
            "analyze_runs_s": analyzed,
            "table_stats": await _table_stats(conn),
            "alerts_by_rule": {k: int(v) for k, v in alerts.items()},
            "pending_checks": int(await conn.fetchval("SELECT count(*) FROM pending_checks")),
            "dead_letters": int(await conn.fetchval("SELECT count(*) FROM dead_letters")),
            "lots": int(await conn.fetchval("SELECT count(*) FROM lots")),
        }
    finally:
        stop_spy(spy)
        if worker is not None:
            stop([worker])
        await conn.close()
        if not args.keep:
            await drop_db(args.database_dsn, dbname)


async def rule_cost(args: argparse.Namespace, broker: EmbeddedBroker, tmp: Path) -> dict[str, Any]:
    chains = Chains(pools=args.pools, tag_start=36**3 * 20)  # tags apart from the latency run's
    catalogue = build_catalogue()
    stream = chains.mix(args.pig_share)
    messages: list[tuple[bytes, bytes]] = []
    kinds: Counter[str] = Counter()
    while len(messages) < args.events:
        chain = next(stream)
        kinds[chain.kind] += 1
        for e in chain.events:
            model = catalogue.event.validate_json(orjson.dumps(e))
            messages.append((e["operator"].encode(), canonical_bytes(model)))
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_events=COST_TOPIC, events_partitions=args.partitions)
    await ensure_topics(settings)
    produce_s = await produce(broker.bootstrap, COST_TOPIC, messages, linger_ms=5)
    n = len(messages)
    runs = []
    modes = args.modes.split(",")
    for run in range(args.cost_runs):
        for mode in modes if run % 2 == 0 else modes[::-1]:  # alternate the order: drift hits both alike
            r = await _apply_once(args, broker, tmp, n, mode, run)
            runs.append(r)
            print(f"  cost run {run} rules {mode}: {r['events_per_s']:,.0f} events/s", file=sys.stderr)
    rate = {m: statistics.median(r["events_per_s"] for r in runs if r["mode"] == m) for m in modes}
    out: dict[str, Any] = {"events": n, "chains": dict(kinds), "produce_s": produce_s, "runs": runs}
    out["events_per_s"] = rate
    if "off" in rate:
        out["cost_vs_off"] = {m: 1 - v / rate["off"] for m, v in rate.items() if m != "off"}
    return out


# -- the whole run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-alerts-"))
    broker = EmbeddedBroker.start(log_file=tmp / "broker.log")
    result: dict[str, Any] = {"logs": str(tmp)}
    try:
        admin = await asyncpg.connect(args.database_dsn + "/postgres")
        result["postgres"] = str(await admin.fetchval("SHOW server_version"))
        result["postgres_settings"] = dict(
            await admin.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["autovacuum", "autovacuum_naptime", "jit", "shared_buffers", "work_mem", "synchronous_commit"],
            )
        )
        await admin.close()
        if not args.skip_latency:
            print("Kafka hop (raw limit) …", file=sys.stderr)
            result["delivery"] = {str(w): await _delivery(broker.bootstrap, w, 100) for w in (500, 50)}
            print("latency under load …", file=sys.stderr)
            result["latency"] = await latency(args, broker, tmp)
        if not args.skip_cost:
            print("rule cost …", file=sys.stderr)
            result["cost"] = await rule_cost(args, broker, tmp)
    finally:
        broker.stop()
    return result


def report(args: argparse.Namespace, r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    lat = r.get("latency")
    if lat:
        g, s = lat["get"], lat["sse"]
        rows += [
            (
                "alert visible on GET /v1/alerts/{id} p50 / p99 / max",
                f"{g['p50'] * 1000:.0f} / {g['p99'] * 1000:.0f} / {g['max'] * 1000:.0f} ms",
                f"goal p99 ≤ {GOAL_P99_S:.0f} s: {goal(g['p99'] <= GOAL_P99_S and not lat['get_missing'])}",
            ),
            (
                "alert on the SSE stream p50 / p99 / max",
                f"{s['p50'] * 1000:.0f} / {s['p99'] * 1000:.0f} / {s['max'] * 1000:.0f} ms",
                f"goal p99 ≤ {GOAL_P99_S:.0f} s: {goal(s['p99'] <= GOAL_P99_S and not lat['sse_missing'])}",
            ),
            (
                "  202 → start of the judging transaction p50 / p99",
                f"{lat['to_txn']['p50'] * 1000:.0f} / {lat['to_txn']['p99'] * 1000:.0f} ms",
                "Kafka, fetch, the batch before",
            ),
            (
                "  that transaction (apply + rules + commit) p50 / p99",
                f"{lat['txn']['p50'] * 1000:.0f} / {lat['txn']['p99'] * 1000:.0f} ms",
                f"{lat['txn_events']['p50']:.0f} events per batch (p50)",
            ),
            (
                "  raw limit: produce → consumer, fetch wait 500 / 50 ms",
                " / ".join(
                    f"{r['delivery'][w]['p50'] * 1000:.0f}-{r['delivery'][w]['p99'] * 1000:.0f}" for w in ("500", "50")
                )
                + " ms",
                "p50-p99; the worker keeps aiokafka's 500",
            ),
            ("  samples (missing GET / SSE)", f"{lat['samples']} ({lat['get_missing']} / {lat['sse_missing']})", ""),
            (
                "  trigger POST (1 event → 202) p50 / p99",
                f"{lat['trigger_post_ms']['p50']:.0f} / {lat['trigger_post_ms']['p99']:.0f} ms",
                "",
            ),
            (
                "background load achieved (target)",
                f"{lat['background_rate']:,.0f} events/s",
                f"target {lat['target_rate']:,.0f}, batches of {args.batch}",
            ),
            (
                "  worker applied during the window",
                f"{lat['applied_rate_window']:,.0f} events/s",
                f"backlog at end {lat['backlog_at_end']:,} events",
            ),
            (
                "  cores used: api / worker / postgres / broker / bench",
                " / ".join(f"{lat['cpu'][k + '_cores']:.2f}" for k in ("api", "worker", "postgres", "broker", "bench")),
                f"machine {lat['cpu']['machine_busy']:.0%} busy, other processes {lat['cpu']['other_cores']:.2f}",
            ),
            ("  bench event-loop lag p99", f"{lat['bench_loop_lag_ms']['p99']:.1f} ms", "the client's own error"),
        ]
    cost = r.get("cost")
    if cost:
        for mode, rate in cost["events_per_s"].items():
            note = f"{cost['events']:,} events, median of {args.cost_runs}"
            rows.append((f"worker apply, rules {mode}", f"{rate:,.0f} events/s", note))
        for mode, c in cost.get("cost_vs_off", {}).items():
            note = f"goal ≤ {GOAL_COST:.0%}: {goal(c <= GOAL_COST)}" if mode == "on" else "(part of it)"
            rows.append((f"rule cost, {mode} (1 - {mode}/off)", f"{c:.0%}", note))
    width = max(len(x[0]) for x in rows) if rows else 0
    print(
        f"\nalerts: {args.samples} samples every {args.interval} s under {args.rate:.0f} events/s; cost on "
        f"{args.events:,} events × {args.cost_runs} run(s); {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {r.get('postgres')}, "
        f"commit {r.get('code', {}).get('commit')}{' + changes' if r.get('code', {}).get('changed') else ''}"
    )
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>24}  {note}")
    if r.get("postgres_settings", {}).get("autovacuum") == "off" and not args.analyze_every:
        print(
            "  note: autovacuum is off on this server, so the fresh databases never get statistics and their plans "
            "guess; --analyze-every 5 emulates autovacuum"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--samples", type=int, default=400, help="triggering events measured (default 400)")
    add("--interval", type=float, default=0.25, help="seconds between triggering events (default 0.25)")
    add("--warmup-triggers", type=int, default=8, help="triggers before the measured ones, not counted (default 8)")
    add("--warmup", type=float, default=5.0, help="seconds of background load before measuring (default 5)")
    add("--rate", type=float, default=300.0, help="background events/s of normal chains (default 300)")
    add("--batch", type=int, default=30, help="background events per POST (default 30)")
    add("--poll-ms", type=float, default=5.0, help="pause between GET /v1/alerts/{id} polls (default 5 ms)")
    add("--sample-timeout", type=float, default=30.0, help="give up on one alert after this (default 30 s)")
    add("--events", type=int, default=30_000, help="events applied per rule-cost run (default 30000)")
    add("--cost-runs", type=int, default=2, help="rules on/off pairs, alternating order; median (default 2)")
    add("--modes", default="on,off", help="worker modes to compare: on, off, integrity, market (default on,off)")
    add("--pig-share", type=float, default=0.5, help="share of pig chains among normal chains (default 0.5)")
    add("--pools", type=int, default=25, help="operator pools: each pool is one set of chain operators (default 25)")
    add("--partitions", type=int, default=4, help="partitions of the events topics (default 4)")
    add("--analyze-every", type=float, default=0.0, metavar="S",
        help="run ANALYZE on the database every S s while measuring, as autovacuum would on a database that "
        "has run a while (default 0: never; a fresh database then has no statistics)")  # fmt: skip
    add("--skip-latency", action="store_true", help="only measure the rule cost")
    add("--skip-cost", action="store_true", help="only measure the latency")
    add("--py-spy", metavar="DIR", help="record the worker (and API) with py-spy into DIR (flame graphs)")
    add("--keep", action="store_true", help="keep the databases (for EXPLAIN) instead of dropping them")
    add_runner_options(parser, "alerts")
    args = parser.parse_args()

    started = time.monotonic()
    code = code_version(tree=True)
    result = asyncio.run(run(args))
    result["code"] = code
    after = code_version(tree=True)
    if {k: v for k, v in code.items() if k != "commit"} != {k: v for k, v in after.items() if k != "commit"}:
        print("warning: trace_service changed during the run; the figures mix two versions", file=sys.stderr)
        result["code_changed_during_run"] = after
    result["elapsed_s"] = time.monotonic() - started
    report(args, result)
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = write_result("alerts", {"args": vars(args), "machine": machine, **result}, args.out)
    print(f"\nwritten: {out} ({result['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
