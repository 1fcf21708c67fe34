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
worker as child processes. Prints a table and writes JSON to ``bench/results/`` (or to ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import (
    add_runner_options,
    count_events,
    create_db,
    drop_db,
    pct,
    peak_rss_mb,
    produce,
    service_env,
    spawn,
    spawn_api,
    stop,
    wait_events,
    wait_ready,
    write_result,
)
from trace_service.contract.events import build_catalogue, canonical_bytes, fingerprint
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker
from trace_service.settings import Settings


def _event(operator: str, i: int) -> dict[str, Any]:
    # A harvest creates its own lot: an event about a lot nobody created would wait for its holder
    # (contract section 7) instead of being applied.
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "produce.harvested",
        "occurred_at": "2026-11-25T03:40:00+08:00",
        "operator": operator,
        "data": {
            "lot": f"BENCH{i:012d}{secrets.token_hex(2).upper()}",
            "base_code": operator,
            "product_code": "VEG-CHOYSUM",
            "product_name": "菜心",
            "weight_kg": round(10 + (i % 400) / 10, 1),
            "compliance_cert_number": "HG-2026-000123",
            "origin_region": "442000",
            "harvested_at": "2026-11-25T03:00:00+08:00",
        },
    }


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
    dbname = await create_db(args.database_dsn, "trace_bench")
    database_url = f"{args.database_url}/{dbname}"
    token = secrets.token_urlsafe(24)
    env = service_env(
        database_url, broker.bootstrap, TRACE_ADMIN_TOKEN=token, TRACE_EVENTS_PARTITIONS=str(args.partitions)
    )
    settings = Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap, events_partitions=args.partitions)
    await asyncio.to_thread(migrate, database_url)
    await ensure_topics(settings)
    conn = await asyncpg.connect(f"{args.database_dsn}/{dbname}")
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        api, base = spawn_api(env, tmp / "api.log")
        worker = spawn(["worker"], env, tmp / "worker.log")
        procs += [api, worker]
        await wait_ready(base, procs=procs)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
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
        await wait_events(conn, 3 * args.batch, 60, procs=procs)

        # 1. POST throughput and end to end.
        t_start = time.monotonic()
        post_seconds, latencies = await _post_all(base, key, batches, args.clients)
        t_applied = await wait_events(conn, n + 3 * args.batch, 600, procs=procs)
        result["post_events_per_s"] = n / post_seconds
        result["post_batch_ms_p50"] = statistics.median(latencies)
        result["post_batch_ms_p99"] = pct(latencies, 0.99)
        result["e2e_events_per_s"] = n / (t_applied - t_start)
        result["api_peak_rss_mb"] = peak_rss_mb(api.pid)

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
        await produce(broker.bootstrap, settings.topic_events, messages, linger_ms=5)
        before = await count_events(conn)
        t0 = time.monotonic()
        worker = spawn(["worker"], env, tmp / "worker2.log")
        procs.append(worker)
        # Group join is part of a cold start, not of the apply rate: time from the first applied row.
        while await count_events(conn) == before:
            await asyncio.sleep(0.01)
        t_first = time.monotonic()
        t_done = await wait_events(conn, before + n, 600)
        result["worker_join_s"] = t_first - t0
        result["apply_events_per_s"] = n / (t_done - t_first)
        result["worker_peak_rss_mb"] = peak_rss_mb(worker.pid)

        # 3. Raw limits with the same messages and rows.
        produce_s = await produce(broker.bootstrap, "bench.raw.produce", messages, linger_ms=5)
        result["raw_produce_msgs_per_s"] = n / produce_s
        copy_s = await _raw_copy(conn, rows)
        result["raw_copy_rows_per_s"] = n / copy_s
        result["apply_vs_copy"] = result["apply_events_per_s"] / result["raw_copy_rows_per_s"]
        result["post_vs_produce"] = result["post_events_per_s"] / result["raw_produce_msgs_per_s"]
    finally:
        stop(procs)
        await conn.close()
        await drop_db(args.database_dsn, dbname)
        broker.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per POST (default 1000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent posting clients (default 4)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic (default 4)")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report the median of each figure")
    add_runner_options(parser, "ingest")
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
    out = write_result("ingest", {"args": vars(args), "runs": runs, "median": figures}, args.out)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
