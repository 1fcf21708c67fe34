"""Ingest benchmark: POST throughput of 1000-event batches, end to end, next to the raw limits.

Measured in one run on the same machine:

* ``post``      events/s accepted by the API (HTTP → validate → produce, acks=all → 202), and the
                request latency p50/p99, with C concurrent clients posting 1000-event batches;
* ``e2e``       events/s from the first POST to the last event applied in Postgres;
* ``apply``     the worker alone: events already in the topic, time until all are applied;
* ``produce``   raw limit: aiokafka produces the same messages straight to the broker;
* ``copy``      raw limit: ``COPY`` of the same rows into a table shaped like ``events``;
* ``rss``       peak resident memory (VmHWM) of the API and worker processes.

Usage: ``python -m bench.ingest --events 100000 --clients 4``. Starts an embedded broker, uses the
Postgres server at ``--database-url`` (a fresh database is created and dropped), starts the API and a
worker as child processes. Prints a table and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from trace_service.contract.events import build_catalogue, canonical_bytes, fingerprint
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker, find_free_port
from trace_service.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


def _event(operator: str, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "lot.tested",
        "occurred_at": "2026-11-25T03:40:00+08:00",
        "operator": operator,
        "data": {
            "lot": f"BENCH{i:012d}",
            "test": "pesticide_rapid",
            "method": "enzyme inhibition",
            "value": round(10 + (i % 400) / 10, 1),
            "result": "pass",
        },
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events"))


async def _wait_count(conn: asyncpg.Connection, target: int, timeout: float) -> float:
    """Wait until the events table holds ``target`` rows; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _count(conn) >= target:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError(f"only {await _count(conn)} of {target} events applied within {timeout:.0f} s")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "trace_service.cli", *args], env=env, stdout=handle, stderr=handle)


async def _post_all(base: str, key: str, batches: list[bytes], clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                while True:
                    t0 = time.perf_counter()
                    r = await client.post("/v1/events", content=body, headers=headers)
                    if r.status_code == 503:  # overloaded or broker hiccup: honour Retry-After, post again
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    if r.status_code != 202:
                        raise RuntimeError(f"POST answered {r.status_code}: {r.text[:300]}")
                    latencies.append((time.perf_counter() - t0) * 1000)
                    break

    t0 = time.monotonic()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return time.monotonic() - t0, latencies


async def _raw_produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        t0 = time.monotonic()
        futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
        return time.monotonic() - t0
    finally:
        await producer.stop()


async def _raw_copy(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> float:
    await conn.execute("CREATE TABLE copy_limit (LIKE events INCLUDING ALL)")
    t0 = time.monotonic()
    await conn.copy_records_to_table(
        "copy_limit",
        records=rows,
        columns=[
            "event_id",
            "event_type",
            "occurred_at",
            "operator",
            "envelope",
            "sha256",
            "source",
            "kafka_partition",
            "kafka_offset",
        ],
    )
    elapsed = time.monotonic() - t0
    await conn.execute("DROP TABLE copy_limit")
    return elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    broker = EmbeddedBroker.start(log_file=tmp / "broker.log")
    dbname = f"trace_bench_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(args.database_dsn + "/postgres")
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    await admin.close()
    database_url = f"{args.database_url}/{dbname}"
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env.update(
        {
            "TRACE_DATABASE_URL": database_url,
            "TRACE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TRACE_ADMIN_TOKEN": token,
            "TRACE_KEY_PEPPER": secrets.token_hex(16),
            "TRACE_LOG_LEVEL": "warning",
            "TRACE_EVENTS_PARTITIONS": str(args.partitions),
        }
    )
    settings = Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap, events_partitions=args.partitions)
    await asyncio.to_thread(migrate, database_url)
    await ensure_topics(settings)
    conn = await asyncpg.connect(f"{args.database_dsn}/{dbname}")
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        port = find_free_port()
        api = _spawn(["api", "--port", str(port)], env, tmp / "api.log")
        worker = _spawn(["worker"], env, tmp / "worker.log")
        procs += [api, worker]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            auth = {"Authorization": f"Bearer {token}"}
            operator = "BENCH" + secrets.token_hex(3).upper()
            r = await client.post(
                "/v1/operators",
                json={"code": operator, "name": "bench", "kind": "wholesale_market", "region": "442000"},
                headers=auth,
            )
            r.raise_for_status()
            key = (await client.post(f"/v1/operators/{operator}/keys", json={}, headers=auth)).json()["key"]

        n = args.events
        events = [_event(operator, i) for i in range(n)]
        batches = [orjson.dumps(events[i : i + args.batch]) for i in range(0, n, args.batch)]

        # Warm up the API, the worker and the consumer group before timing.
        warm = [orjson.dumps([_event(operator, 10**9 + i) for i in range(args.batch)]) for _ in range(3)]
        await _post_all(base, key, warm, 1)
        await _wait_count(conn, 3 * args.batch, 60)

        # 1. POST throughput and end to end.
        t_start = time.monotonic()
        post_seconds, latencies = await _post_all(base, key, batches, args.clients)
        t_applied = await _wait_count(conn, n + 3 * args.batch, 600)
        result["post_events_per_s"] = n / post_seconds
        result["post_batch_ms_p50"] = statistics.median(latencies)
        result["post_batch_ms_p99"] = _pct(latencies, 0.99)
        result["e2e_events_per_s"] = n / (t_applied - t_start)
        result["api_peak_rss_mb"] = _peak_rss_mb(api.pid)

        # 2. The worker alone: stop it, put n events in the topic, start it, time until applied.
        worker.terminate()
        worker.wait(30)
        catalogue = build_catalogue()
        more = [_event(operator, 2 * 10**9 + i) for i in range(n)]
        messages = []
        rows = []
        for e in more:
            model = catalogue.event.validate_json(orjson.dumps(e))
            value = canonical_bytes(model)
            messages.append((operator.encode(), value))
            rows.append(
                (
                    uuid.UUID(e["event_id"]),
                    e["event_type"],
                    datetime.fromisoformat(e["occurred_at"]),
                    operator,
                    value.decode(),
                    fingerprint(value),
                    "kafka",
                    0,
                    0,
                )
            )
        await _raw_produce(broker.bootstrap, settings.topic_events, messages)
        before = await _count(conn)
        t0 = time.monotonic()
        worker = _spawn(["worker"], env, tmp / "worker2.log")
        procs.append(worker)
        # Group join is part of a cold start, not of the apply rate: time from the first applied row.
        while await _count(conn) == before:
            await asyncio.sleep(0.01)
        t_first = time.monotonic()
        t_done = await _wait_count(conn, before + n, 600)
        result["worker_join_s"] = t_first - t0
        result["apply_events_per_s"] = n / (t_done - t_first)
        result["worker_peak_rss_mb"] = _peak_rss_mb(worker.pid)

        # 3. Raw limits with the same messages and rows.
        produce_s = await _raw_produce(broker.bootstrap, "bench.raw.produce", messages)
        result["raw_produce_msgs_per_s"] = n / produce_s
        copy_s = await _raw_copy(conn, rows)
        result["raw_copy_rows_per_s"] = n / copy_s
        result["apply_vs_copy"] = result["apply_events_per_s"] / result["raw_copy_rows_per_s"]
        result["post_vs_produce"] = result["post_events_per_s"] / result["raw_produce_msgs_per_s"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        await conn.close()
        admin = await asyncpg.connect(args.database_dsn + "/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
        broker.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per POST (default 1000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent posting clients (default 4)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic (default 4)")
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432", help="server URL, no db"
    )
    parser.add_argument("--database-dsn", default="postgresql://postgres@127.0.0.1:5432", help="the same for asyncpg")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report the median of each figure")
    args = parser.parse_args()

    runs = [asyncio.run(run(args)) for _ in range(args.runs)]
    figures = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [
        (
            "POST 1000-event batches",
            f"{figures['post_events_per_s']:,.0f} events/s",
            f"{figures['post_vs_produce']:.0%} of raw produce",
        ),
        (
            "  batch latency p50 / p99",
            f"{figures['post_batch_ms_p50']:.0f} / {figures['post_batch_ms_p99']:.0f} ms",
            "",
        ),
        ("end to end (POST → applied)", f"{figures['e2e_events_per_s']:,.0f} events/s", ""),
        (
            "worker apply alone",
            f"{figures['apply_events_per_s']:,.0f} events/s",
            f"{figures['apply_vs_copy']:.0%} of raw COPY",
        ),
        ("raw produce (aiokafka → broker)", f"{figures['raw_produce_msgs_per_s']:,.0f} msg/s", "limit"),
        ("raw COPY into events", f"{figures['raw_copy_rows_per_s']:,.0f} rows/s", "limit"),
        ("peak RSS API / worker", f"{figures['api_peak_rss_mb']:.0f} / {figures['worker_peak_rss_mb']:.0f} MB", ""),
        ("worker cold start (group join)", f"{figures['worker_join_s']:.1f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\ningest: {args.events:,} events, {args.clients} clients, batch {args.batch}, {args.runs} run(s), "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>22}  {note}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "median": figures}, indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
