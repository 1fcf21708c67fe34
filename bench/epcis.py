"""EPCIS benchmark (issue 14): capture end to end in documents of 1,000 events, and MATCH_anyEPC on one lot.

In one run, on a fresh database, the embedded broker, ``trace-service api`` and one ``trace-service worker``
as child processes:

* ``validate``  raw limit: the same documents validated as capture validates them, in this process (the
                standard's JSON Schema on each whole document, then the CBV event hash of each event): events/s;
* ``capture``   ``--documents`` documents of 1,000 ObjectEvents (each a lot of its own as an LGTIN quantity,
                commissioned at the reporting operator, with ILMD and a temperature reading) posted to
                ``POST /epcis/capture`` with an operator key, ``--concurrency`` requests in flight: events/s from
                the first POST to the last event in the EPCIS index, POST p50/p99, and the cores of each process;
* ``query``     ``epcis_events`` filled with ``--rows`` more rows (default 100,000; the goal is stated at
                1,000,000) by one ``generate_series`` INSERT, four events per lot (the city's lot URIs in
                epcList), then ``GET /epcis/events?MATCH_anyEPC=<one lot>`` ``--queries`` times with a regulator
                key (a random lot each time): p50/p99, next to the same SELECT on asyncpg.

Usage: ``python -m bench.epcis --documents 10 --rows 1000000``. Prints a table and writes JSON to
``bench/results/`` (or ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import tempfile
import time
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
    service_env,
    spawn,
    spawn_api,
    stop,
    summary,
    wait_ready,
    write_result,
)
from trace_service.contract.epcis import hashing, schema
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker
from trace_service.settings import Settings

GOAL_CAPTURE = 5_000  # events/s end to end, documents of 1,000 events (issue 14)
GOAL_QUERY_P50_MS = 10.0  # MATCH_anyEPC on one lot at 1 M events (issue 14)
EVENTS_PER_DOCUMENT = 1000
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _lot(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(10))


def documents(n: int, operator: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    place = {"id": f"urn:zs-trace:operator:{operator}"}
    docs = []
    for d in range(n):
        events = []
        for i in range(EVENTS_PER_DOCUMENT):
            minute = (d * EVENTS_PER_DOCUMENT + i) % 1440
            at = f"2026-11-30T{minute // 60:02d}:{minute % 60:02d}:00.000+08:00"
            events.append(
                {
                    "type": "ObjectEvent",
                    "eventTime": at,
                    "eventTimeZoneOffset": "+08:00",
                    "epcList": [],
                    "quantityList": [
                        {"epcClass": f"urn:epc:class:lgtin:6901234.012345.{_lot(rng)}", "quantity": 20.5, "uom": "KGM"}
                    ],
                    "action": "ADD",
                    "bizStep": "commissioning",
                    "disposition": "active",
                    "readPoint": place,
                    "bizLocation": place,
                    "ilmd": {"cbvmda:countryOfOrigin": "NZ"},
                    "sensorElementList": [
                        {
                            "sensorMetadata": {"time": at},
                            "sensorReport": [{"type": "Temperature", "value": -19.0, "uom": "CEL"}],
                        }
                    ],
                }
            )
        docs.append(
            {
                "@context": CONTEXT,
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": "2026-11-30T12:00:00.000+08:00",
                "epcisBody": {"eventList": events},
            }
        )
    return docs


def validate_only(bodies: list[bytes]) -> dict[str, Any]:
    """What capture computes before it produces: parse, the schema on the whole document, each event's hash."""
    t0 = time.perf_counter()
    events = 0
    for body in bodies:
        doc = orjson.loads(body)
        assert not schema.validate_document(doc)
        for event in doc["epcisBody"]["eventList"]:
            hashing.event_hash(event, doc["@context"])
            events += 1
    wall = time.perf_counter() - t0
    return {"events": events, "seconds": wall, "events_per_s": events / wall}


async def capture(
    base: str, key: dict[str, str], bodies: list[bytes], concurrency: int, dsn: str, operator: str
) -> dict[str, Any]:
    times: list[float] = []
    queue = list(bodies)
    headers = {**key, "Content-Type": "application/json"}

    async def poster(client: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            while True:
                s = time.perf_counter()
                r = await client.post("/epcis/capture", content=body, headers=headers)
                if r.status_code in (429, 503):
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                assert r.status_code == 202, r.text
                times.append((time.perf_counter() - s) * 1000)
                break

    expected = len(bodies) * EVENTS_PER_DOCUMENT
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            await asyncio.gather(*(poster(client) for _ in range(concurrency)))
        posted = time.perf_counter() - t0
        while True:
            indexed = await conn.fetchval("SELECT count(*) FROM epcis_events WHERE operator = $1", operator)
            if indexed >= expected or time.perf_counter() - t0 > 600:
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - t0
    finally:
        await conn.close()
    return {"events": expected, "indexed": indexed, "seconds": wall, "posted_s": posted,
            "events_per_s": indexed / wall, "post_ms": summary(times)}  # fmt: skip


FILL = """
INSERT INTO epcis_events (event_id, epcis_id, type, event_time, record_time, biz_step, disposition, action,
                          read_point, biz_location, operator, epcs, input_epcs, output_epcs, doc)
SELECT md5('bench' || g)::uuid, 'urn:uuid:' || md5('bench' || g)::uuid, 'ObjectEvent',
       timestamptz '2026-01-01 00:00+08' + g * interval '1 second', now(), 'shipping', 'in_transit', 'OBSERVE',
       'urn:zs-trace:operator:442000200101', 'urn:zs-trace:operator:442000200101', '442000200101',
       ARRAY['urn:zs-trace:lot:BENCH' || (g / 4)], '{}', '{}',
       jsonb_build_object('type', 'ObjectEvent', 'eventID', 'urn:uuid:' || md5('bench' || g)::uuid,
                          'eventTime', '2026-01-01T00:00:00.000+08:00', 'eventTimeZoneOffset', '+08:00',
                          'action', 'OBSERVE', 'bizStep', 'shipping',
                          'epcList', jsonb_build_array('urn:zs-trace:lot:BENCH' || (g / 4)))
FROM generate_series(1, $1) AS g
"""

RAW = """
SELECT doc::text FROM epcis_events
WHERE epcs && $1::text[]
  AND (doc->'epcList' ?| $1::text[] OR doc->'childEPCs' ?| $1::text[] OR doc->'inputEPCList' ?| $1::text[]
       OR doc->'outputEPCList' ?| $1::text[] OR parent_id = ANY($1::text[]))
ORDER BY record_time, event_id LIMIT 31
"""


async def query(base: str, key: dict[str, str], dsn: str, rows: int, n: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        await conn.execute(FILL, rows)
        await conn.execute("ANALYZE epcis_events")
        fill_s = time.perf_counter() - t
        total = await conn.fetchval("SELECT count(*) FROM epcis_events")
        rng = random.Random(14)
        # Four events per lot, the lots named by the city's lot URIs in epcList.
        lots = [f"urn:zs-trace:lot:BENCH{rng.randrange(1, rows // 4)}" for _ in range(n)]
        sql: list[float] = []
        for lot in lots:
            s = time.perf_counter()
            await conn.fetch(RAW, [lot])
            sql.append((time.perf_counter() - s) * 1000)
    finally:
        await conn.close()
    out: dict[str, Any] = {"rows": total, "fill_s": fill_s, "sql_ms": summary(sql)}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        times: list[float] = []
        found = 0
        for lot in lots:
            s = time.perf_counter()
            r = await client.get("/epcis/events", params={"MATCH_anyEPC": lot}, headers=key)
            times.append((time.perf_counter() - s) * 1000)
            r.raise_for_status()
            found += len(r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"])
    out["MATCH_anyEPC"] = {"http_ms": summary(times), "events_found": found}
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-epcis-"))
    dbname = await create_db(args.database_dsn, "trace_bench_epcis")
    database_url = f"{args.database_url}/{dbname}"
    dsn = f"{args.database_dsn}/{dbname}"
    token = secrets.token_urlsafe(24)
    result: dict[str, Any] = {
        "database": dbname,
        "documents": args.documents,
        "events_per_document": EVENTS_PER_DOCUMENT,
    }
    broker = EmbeddedBroker.start(log_file=tmp / "broker.log")
    procs = []
    try:
        await asyncio.to_thread(migrate, database_url)
        env = service_env(database_url, broker.bootstrap, TRACE_ADMIN_TOKEN=token)
        await ensure_topics(Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap))
        api, base = spawn_api(env, tmp / "api.log")
        worker = spawn(["worker"], env, tmp / "worker.log")
        procs = [api, worker]
        await wait_ready(base, procs=procs)
        admin = {"Authorization": f"Bearer {token}"}
        operator = "442000" + "".join(secrets.choice("0123456789") for _ in range(6))
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            r = await client.post(
                "/v1/operators",
                json={"code": operator, "name": "bench importer", "kind": "wholesaler", "region": "442000"},
                headers=admin,
            )
            r.raise_for_status()
            r = await client.post(f"/v1/operators/{operator}/keys", json={"name": "bench"}, headers=admin)
            r.raise_for_status()
            key = {"Authorization": f"Bearer {r.json()['key']}"}
            r = await client.post("/v1/keys", json={"role": "regulator", "name": "bench"}, headers=admin)
            r.raise_for_status()
            regulator = {"Authorization": f"Bearer {r.json()['key']}"}
        bodies = [orjson.dumps(d) for d in documents(args.documents, operator, args.seed)]
        result["document_bytes_mean"] = sum(map(len, bodies)) / len(bodies)
        result["validate"] = validate_only(bodies)
        meter = CpuMeter({"bench": os.getpid(), "api": api.pid, "worker": worker.pid}, dbname)
        meter.start()
        result["capture"] = await capture(base, key, bodies, args.concurrency, dsn, operator)
        result["cores_capture"] = meter.stop()
        result["query"] = await query(base, regulator, dsn, args.rows, args.queries)
    finally:
        stop(procs)
        broker.stop()
        if not args.keep:
            await drop_db(args.database_dsn, dbname)
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"\nepcis: {r['documents']} documents of {r['events_per_document']:,} events "
        f"(mean {r['document_bytes_mean'] / 1e6:.2f} MB); {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    v, c = r["validate"], r["capture"]
    print(f"  validate only (schema + event hash), in process  {v['events_per_s']:>10,.0f} events/s")
    print(
        f"  capture end to end (POST → indexed)            {c['events_per_s']:>10,.0f} events/s  "
        f"({c['indexed']:,}/{c['events']:,} in {c['seconds']:.1f} s; POST p50 {c['post_ms']['p50']:.0f} ms, "
        f"p99 {c['post_ms']['p99']:.0f} ms)"
    )
    cores = r["cores_capture"]
    print(f"  cores while capturing: API {cores['api_cores']:.2f}, worker {cores['worker_cores']:.2f}, "
          f"Postgres {cores.get('postgres_cores', float('nan')):.2f}")  # fmt: skip
    q = r["query"]
    print(f"  query, epcis_events at {q['rows']:,} rows (filled in {q['fill_s']:.1f} s):")
    print(
        f"    raw SELECT (asyncpg)                        p50 {q['sql_ms']['p50']:6.2f} ms  "
        f"p99 {q['sql_ms']['p99']:6.2f} ms"
    )
    m = q["MATCH_anyEPC"]
    print(
        f"    GET /epcis/events?MATCH_anyEPC=<one lot>     p50 {m['http_ms']['p50']:6.2f} ms  "
        f"p99 {m['http_ms']['p99']:6.2f} ms  ({m['events_found']:,} events found)"
    )
    print(f"goal: capture ≥ {GOAL_CAPTURE:,} events/s: {goal(c['events_per_s'] >= GOAL_CAPTURE)}")
    p50 = q["MATCH_anyEPC"]["http_ms"]["p50"]
    at = "" if q["rows"] >= 1_000_000 else f" (measured at {q['rows']:,} rows, the goal is at 1,000,000)"
    print(f"goal: MATCH_anyEPC p50 ≤ {GOAL_QUERY_P50_MS:.0f} ms at 1 M events: {goal(p50 <= GOAL_QUERY_P50_MS)}{at}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.epcis", description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=10, help="documents of 1,000 events captured (default 10)")
    parser.add_argument("--concurrency", type=int, default=2, help="capture requests in flight (default 2)")
    parser.add_argument("--rows", type=int, default=100_000, help="epcis_events rows for the query (default 100000)")
    parser.add_argument("--queries", type=int, default=300, help="queries timed (default 300)")
    parser.add_argument("--seed", type=int, default=14, help="random seed of the documents (default 14)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (its name is printed)")
    add_runner_options(parser, "epcis")
    args = parser.parse_args()
    t0 = time.monotonic()
    result = asyncio.run(run(args))
    result["total_s"] = time.monotonic() - t0
    result["code"] = code_version()
    report(result)
    print(f"written: {write_result('epcis', result, args.out)}")


if __name__ == "__main__":
    main()
