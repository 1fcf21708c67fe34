"""Feed benchmark (issue 13): paging the shared stream over HTTP, against the same keyset SELECT on asyncpg.

Fills a fresh database's ``shared_items`` with ``--items`` items shaped like a city's stream (events of every
type with their full envelopes, about 1 in 8 a slaughter intake with an owner's name and plate, plus market
figures and alert versions) by COPY, starts ``trace-service api`` as a child process (no broker: the feed does
not need one) and measures, in the same run:

* ``regulator``   ``GET /v1/feed?after=…&limit=1000`` from 0 to the end with a regulator key (every item, no
                  filter): items/s over the whole walk, and p50/p99 per page;
* ``department``  the same walk with a department key of scopes ``slaughter.*``, ``lot.tested`` and ``market``,
                  without ``personal``: the filtered query, the redaction of the owner fields;
* ``raw``         the regulator's keyset statement straight on asyncpg (``SELECT seq, kind, item::text … WHERE
                  seq > $1 ORDER BY seq LIMIT 1000``, the JSON text read but not parsed): the limit of the store;
* ``lock``        the stream's locked section: a worker-sized batch (``--batch`` events already stored) appended
                  with ``sharing.repository.append`` (the advisory lock, then the insert of the items) in its own
                  transaction, p50/p99 over ``--rounds`` batches, and the items/s it allows when every writer
                  waits for it;
* ``rss``         the API's peak resident memory.

Every feed page also writes its audit line, as in production. Usage: ``python -m bench.feed --items 200000``.
Prints a table and writes JSON to ``bench/results/`` (or to ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import (
    CpuMeter,
    add_runner_options,
    code_version,
    create_db,
    drop_db,
    goal,
    peak_rss_mb,
    service_env,
    spawn_api,
    stop,
    summary,
    wait_ready,
    write_result,
)
from trace_service.db.engine import create_engine, migrate
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing_repo

GOAL_ITEMS_PER_S = 20_000
PAGE = 1000
DAY = datetime(2026, 11, 25, tzinfo=UTC)
TYPES = [  # (event type, weight): retail and trade dominate a city day
    ("retail.sold", 50), ("trade.shipped", 12), ("trade.received", 12), ("lot.tested", 8),
    ("slaughter.pigs_received", 4), ("slaughter.asf_tested", 3), ("slaughter.batch_slaughtered", 3),
    ("farm.pigs_dispatched", 3), ("produce.harvested", 3), ("lot.disposed", 1), ("regulator.lot_held", 1),
]  # fmt: skip


def _code(rng: random.Random, n: int = 16) -> str:
    return "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(n))


def _data(rng: random.Random, event_type: str) -> dict[str, Any]:
    lot = _code(rng)
    if event_type == "slaughter.pigs_received":
        return {"lot": lot, "quarantine_cert_number": f"B44{rng.randrange(10**9)}", "owner": {"code": "4400001990"
                "01011234", "name": "李某某"}, "farm_code": "4412030001", "origin_region": "441203", "head_count": 24,
                "dead_on_arrival": 0, "ear_tags": [f"1441203{rng.randrange(10**8):08d}" for _ in range(24)],
                "live_weight_kg": 2760.5, "vehicle_plate": "粤T12345", "from_lot": _code(rng)}  # fmt: skip
    if event_type in ("trade.shipped", "trade.received"):
        lines = [{"lot": _code(rng), "from_lot": _code(rng), "weight_kg": 120.5} for _ in range(rng.randint(1, 4))]
        return {"voucher_number": f"PF-{rng.randrange(10**8)}", "seller": "442000200101", "lines": lines,
                "documents": {"quarantine_cert_number": "CQ-4420-2026-88001"}}  # fmt: skip
    if event_type == "retail.sold":
        return {"sale_code": _code(rng, 20), "lot": lot, "stall": "A区12号", "weight_kg": 1.25, "unit_price": 32.0}
    return {"lot": lot, "test": "pesticide_rapid", "method": "enzyme inhibition", "value": 12.5, "result": "pass"}


def make_items(n: int, seed: int) -> list[tuple[int, str, str | None, str | None, str, str, str]]:
    """``n`` items as COPY rows: (seq, kind, event_type, rule, region, operator, item JSON)."""
    rng = random.Random(seed)
    types, weights = zip(*TYPES, strict=True)
    rows = []
    for seq in range(1, n + 1):
        operator = f"4420003{rng.randrange(10**5):05d}"
        at = (DAY + timedelta(seconds=seq * 0.5)).isoformat()
        roll = rng.random()
        if roll < 0.08:
            item = {"day": "2026-11-25", "market": operator, "region": "442000", "product_code": "PORK-CARCASS",
                    "kg_received": 1250.5, "kg_sold": 310.2, "head": 0, "avg_price": 32.0}  # fmt: skip
            rows.append((seq, "market", None, None, "442000", operator, orjson.dumps(item).decode()))
            continue
        if roll < 0.10:
            alert_id = f"al_{rng.randrange(16**24):024x}"
            item = {"id": alert_id, "rule": "mass_balance", "severity": "warning", "level": None,
                    "subject": {"type": "lot", "code": _code(rng)}, "operator": operator,
                    "message": {"zh": "批次数量不平衡", "en": "mass balance off"}, "evidence": {"kg": 12.5},
                    "status": "open", "version": 1, "created_at": at, "updated_at": at}  # fmt: skip
            rows.append((seq, "alert", None, "mass_balance", "442000", operator, orjson.dumps(item).decode()))
            continue
        event_type = rng.choices(types, weights)[0]
        item = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "event_type": event_type,
                "occurred_at": at, "operator": operator, "data": _data(rng, event_type), "recorded_at": at,
                "source": "api"}  # fmt: skip
        rows.append((seq, "event", event_type, None, "442000", operator, orjson.dumps(item).decode()))
    return rows


async def fill(conn: asyncpg.Connection, rows: list[Any]) -> float:
    t0 = time.monotonic()
    await conn.copy_records_to_table(
        "shared_items", records=rows, columns=["seq", "kind", "event_type", "rule", "region", "operator", "item"]
    )
    await conn.execute("SELECT setval('shared_items_seq', $1)", len(rows))
    await conn.execute("ANALYZE shared_items")
    return time.monotonic() - t0


async def walk(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """The department's loop from 0 to the end: items/s and the time of each page."""
    after, items, pages, times, size = 0, 0, 0, [], 0
    t0 = time.perf_counter()
    while True:
        s = time.perf_counter()
        r = await client.get("/v1/feed", params={"after": after, "limit": PAGE}, headers=headers)
        times.append((time.perf_counter() - s) * 1000)
        r.raise_for_status()
        body = orjson.loads(r.content)
        items += len(body["items"])
        size += len(r.content)
        pages += 1
        if body["next"] == after:
            break
        after = body["next"]
    wall = time.perf_counter() - t0
    return {"items": items, "pages": pages, "seconds": wall, "items_per_s": items / wall, "page_ms": summary(times),
            "bytes_per_item": size / max(1, items)}  # fmt: skip


async def raw(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        after, items, times = 0, 0, []
        t0 = time.perf_counter()
        while True:
            s = time.perf_counter()
            rows = await conn.fetch(
                "SELECT seq, kind, item::text FROM shared_items WHERE seq > $1 ORDER BY seq LIMIT $2", after, PAGE
            )
            times.append((time.perf_counter() - s) * 1000)
            if not rows:
                break
            items += len(rows)
            after = rows[-1][0]
        wall = time.perf_counter() - t0
    finally:
        await conn.close()
    return {"items": items, "seconds": wall, "items_per_s": items / wall, "page_ms": summary(times)}


async def lock_cost(database_url: str, dsn: str, batch: int, rounds: int) -> dict[str, Any]:
    """The locked section of a worker's batch: the advisory lock and the insert of ``batch`` event items."""
    conn = await asyncpg.connect(dsn)
    ids = [[uuid.uuid4() for _ in range(batch)] for _ in range(rounds)]
    envelope = orjson.dumps({"event_type": "retail.sold", "data": _data(random.Random(1), "retail.sold")}).decode()
    try:
        await conn.copy_records_to_table(
            "events",
            records=[(i, "retail.sold", DAY, "442000300001", envelope, b"\x00", "api", 0, 0) for r in ids for i in r],
            columns=["event_id", "event_type", "occurred_at", "operator", "envelope", "sha256", "source",
                     "kafka_partition", "kafka_offset"],
        )  # fmt: skip
    finally:
        await conn.close()
    engine = create_engine(Settings(database_url=database_url), pool_size=1, name="bench-feed-lock")
    times = []
    try:
        for round_ids in ids:
            async with engine.begin() as c:
                s = time.perf_counter()
                await sharing_repo.append(c, event_ids=round_ids)
                times.append((time.perf_counter() - s) * 1000)
    finally:
        await engine.dispose()
    p50 = summary(times)["p50"]
    return {"batch": batch, "rounds": rounds, "locked_ms": summary(times), "items_per_s_bound": batch / p50 * 1000}


async def key(client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]) -> dict[str, str]:
    r = await client.post("/v1/keys", json=body, headers=admin)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-feed-"))
    dbname = await create_db(args.database_dsn, "trace_bench_feed")
    database_url = f"{args.database_url}/{dbname}"
    dsn = f"{args.database_dsn}/{dbname}"
    token = secrets.token_urlsafe(24)
    result: dict[str, Any] = {"database": dbname, "items": args.items, "page": PAGE}
    api: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(migrate, database_url)
        conn = await asyncpg.connect(dsn)
        try:
            rows = make_items(args.items, args.seed)
            result["item_bytes_mean"] = sum(len(r[-1]) for r in rows) / len(rows)
            result["fill_s"] = await fill(conn, rows)
            del rows
        finally:
            await conn.close()
        env = service_env(database_url, f"127.0.0.1:{find_free_port()}", TRACE_ADMIN_TOKEN=token)
        api, base = spawn_api(env, tmp / "api.log")
        await wait_ready(base, "/healthz", procs=[api])
        admin = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_keepalive_connections=1, max_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            regulator = await key(client, admin, {"role": "regulator", "name": "bench"})
            department = await key(
                client,
                admin,
                {"role": "department", "name": "bench", "scopes": ["slaughter.*", "lot.tested", "market"]},
            )
            await walk(client, regulator)  # warm-up: the table in the page cache, plans made
            meter = CpuMeter({"bench": os.getpid(), "api": api.pid}, dbname)
            meter.start()
            result["regulator"] = await walk(client, regulator)
            result["cores_regulator"] = meter.stop()
            meter.start()
            result["department"] = await walk(client, department)
            result["cores_department"] = meter.stop()
        result["raw"] = await raw(dsn)
        result["api_peak_rss_mb"] = peak_rss_mb(api.pid)
        result["lock"] = await lock_cost(database_url, dsn, args.batch, args.rounds)
    finally:
        if api is not None:
            stop([api])
        if not args.keep:
            await drop_db(args.database_dsn, dbname)
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"\nfeed: {r['items']:,} items (mean {r['item_bytes_mean']:.0f} B of JSON), pages of {r['page']}; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"  {'':<34} {'items/s':>10} {'page p50':>9} {'page p99':>9}  items")
    for name, label in (("regulator", "HTTP, regulator (everything)"), ("department", "HTTP, department (filtered)"),
                        ("raw", "raw keyset SELECT (asyncpg)")):  # fmt: skip
        m = r[name]
        print(
            f"  {label:<34} {m['items_per_s']:>10,.0f} {m['page_ms']['p50']:>7.1f}ms {m['page_ms']['p99']:>7.1f}ms"
            f"  {m['items']:,}"
        )
    ratio = r["regulator"]["items_per_s"] / r["raw"]["items_per_s"]
    print(f"  HTTP / raw: {ratio:.0%}; API peak RSS {r['api_peak_rss_mb']:.0f} MB")
    c = r["cores_regulator"]
    print(f"  cores while paging (regulator): API {c['api_cores']:.2f}, bench {c['bench_cores']:.2f}, "
          f"Postgres {c.get('postgres_cores', float('nan')):.2f}, others {max(0.0, c['other_cores']):.2f}")  # fmt: skip
    lk = r["lock"]
    print(
        f"  stream lock: a batch of {lk['batch']:,} events holds it {lk['locked_ms']['p50']:.1f} ms p50 / "
        f"{lk['locked_ms']['p99']:.1f} ms p99: at most {lk['items_per_s_bound']:,.0f} items/s over all writers"
    )
    ok = r["regulator"]["items_per_s"] >= GOAL_ITEMS_PER_S
    print(f"goal: feed paged ≥ {GOAL_ITEMS_PER_S:,} items/s: {goal(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="items on the stream (default 200000)")
    parser.add_argument("--batch", type=int, default=5000, help="events per appended batch, lock cost (default 5000)")
    parser.add_argument("--rounds", type=int, default=20, help="batches appended for the lock cost (default 20)")
    parser.add_argument("--seed", type=int, default=13, help="random seed of the items (default 13)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (its name is printed)")
    add_runner_options(parser, "feed")
    args = parser.parse_args()
    t0 = time.monotonic()
    result = asyncio.run(run(args))
    result["total_s"] = time.monotonic() - t0
    result["code"] = code_version()
    result["goal_met"] = result["regulator"]["items_per_s"] >= GOAL_ITEMS_PER_S
    report(result)
    print(f"written: {write_result('feed', result, args.out)}")


if __name__ == "__main__":
    main()
