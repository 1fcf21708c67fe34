"""Delivery benchmark: webhook throughput to one receiver, commit-to-receiver latency, the deliverer's memory.

Measured in one run on the same machine, against a fresh database:

* ``throughput``  ``--items`` event items (envelopes of a simulated city day, ~0.7 KB each) are put on the
                  shared stream first; then ``trace-service deliver`` (a child process, default settings:
                  batches of 500) delivers them to one subscription whose receiver (another child process,
                  ``ThreadingHTTPServer``) verifies every batch with ``standardwebhooks``. items/s from the first
                  batch's arrival to the last's.
* ``latency``     a writer stands for the worker: it commits items to the stream at ``--rate`` items/s in
                  transactions of ``--per-commit``, taking the stream's lock and drawing ``seq`` as the worker
                  does, and notes the time each commit returned. The receiver notes each item's arrival. p50 /
                  p99 / max of arrival − commit, over ``--seconds`` of writing.
* ``rss``         the deliver process's peak resident memory (VmHWM) over the run.
* ``raw``         the limits next to them, in the same run: the receiver's own accept rate for bodies of the
                  same size sent one at a time as fast as one client can (the ceiling of one ordered stream to
                  one receiver), and the rate at which ``sharing.service.page`` reads the stream alone.

Goals (issue 13): ≥ 5,000 items/s to one receiver in batches; p99 ≤ 1 s from commit to receiver; RSS < 200 MB.

Usage: ``python -m bench.delivery`` (about a minute on 2 cores). Uses the Postgres server at
``--database-dsn`` (a fresh database is created and dropped). Prints a table and writes JSON to
``bench/results/`` (or ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import (
    SIGNING_SECRET,
    add_runner_options,
    code_version,
    create_db,
    drop_db,
    goal,
    peak_rss_mb,
    service_env,
    spawn,
    summary,
    write_result,
)
from trace_service.access import keys
from trace_service.access.scopes import Scopes
from trace_service.db.engine import create_engine, migrate
from trace_service.delivery import signing
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing_repo
from trace_service.sharing import service as sharing
from trace_service.sim.city import build_city
from trace_service.sim.events import simulate

ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(8)


# -- the receiver (a child process) -------------------------------------------------------------------------


def serve_receiver(port: int, secret: str, out: Path) -> None:
    """Accept deliveries, verify each, note every item's arrival; on SIGTERM write the notes to ``out``."""
    import signal

    from standardwebhooks import Webhook

    hook = Webhook(secret)
    lock = threading.Lock()
    arrivals: dict[int, float] = {}
    state = {"batches": 0, "bad": 0, "bytes": 0, "first": 0.0, "last": 0.0, "raw_bodies": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            now = time.time()
            try:
                batch = hook.verify(body, {k.lower(): v for k, v in self.headers.items()})
                ok = True
            except Exception:
                batch, ok = {"items": []}, False
            if self.path == "/raw":  # the accept-rate probe: the same work, nothing noted
                with lock:
                    state["raw_bodies"] += 1
            else:
                with lock:
                    state["batches"] += 1
                    state["bad"] += 0 if ok else 1
                    state["bytes"] += len(body)
                    state["first"] = state["first"] or now
                    state["last"] = now
                    for item in batch["items"]:
                        arrivals.setdefault(item["seq"], now)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                data = orjson.dumps({"items": len(arrivals), **state})
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def finish(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, finish)
    server.serve_forever(poll_interval=0.05)
    with lock:
        out.write_bytes(orjson.dumps({"arrivals": arrivals, **state}, option=orjson.OPT_NON_STR_KEYS))


def start_receiver(port: int, secret: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.delivery", "--receiver", str(port), str(out)],
        env={**os.environ, "BENCH_WEBHOOK_SECRET": secret},  # kept off the command line
        stdout=subprocess.DEVNULL,
    )


# -- the stream ----------------------------------------------------------------------------------------------

_APPEND = """
INSERT INTO shared_items (seq, kind, event_type, region, operator, item)
SELECT nextval('shared_items_seq'), 'event', i->>'event_type', '442000', i->>'operator', i
FROM unnest($1::jsonb[]) WITH ORDINALITY AS t(i, n) ORDER BY n
RETURNING seq
"""


def envelopes(n: int) -> list[bytes]:
    """``n`` distinct event items: a simulated small city's day, cycled with fresh ids."""
    sim = simulate(build_city(4242, "small"), days=1, end=date(2025, 9, 3), anomalies=0.0)
    out = []
    for i in range(n):
        e = dict(sim.events[i % len(sim.events)])
        e["event_id"] = str(uuid.uuid4())
        e["recorded_at"] = "2025-09-03T04:10:00.123456+08:00"
        e["source"] = "api"
        out.append(orjson.dumps(e))
    return out


async def append(conn: asyncpg.Connection, items: list[bytes]) -> list[int]:
    """Put items on the stream as the worker does: under the stream's lock, seq drawn right before the commit."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", sharing_repo.STREAM_LOCK)
        rows = await conn.fetch(_APPEND, [i.decode() for i in items])
    return [r["seq"] for r in rows]


async def subscribe(conn: asyncpg.Connection, url: str, cursor: int) -> tuple[str, str, bytes]:
    """A subscription of the bootstrap admin to everything, straight into the table; its id, secret and key."""
    sid = signing.new_subscription_id()
    salt = signing.new_salt()
    await conn.execute(
        """INSERT INTO subscriptions (id, url, owner_key_id, owner_role, allow_private, secret_salt, cursor_seq)
           VALUES ($1, $2, 'admin-token', 'admin', true, $3, $4)""",
        sid,
        url,
        salt,
        cursor,
    )
    master = keys.signing_master(SIGNING_SECRET, "")
    assert master is not None
    return sid, signing.secret(master, sid, salt), signing.secret_key(master, sid, salt)


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    data: dict[str, Any] = (await client.get("/stats")).json()
    return data


async def wait_items(client: httpx.AsyncClient, target: int, timeout: float, deliver: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await stats(client))["items"] >= target:
            return
        if deliver.poll() is not None:
            raise RuntimeError(f"the deliver process exited with {deliver.returncode}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the receiver got {(await stats(client))['items']} of {target} items in {timeout:.0f} s")


# -- the run -------------------------------------------------------------------------------------------------


async def read_rate(database_url: str, after: int, items: int) -> float:
    """items/s of sharing.service.page alone, pages of 500 for an audience that may read everything."""
    engine = create_engine(Settings(database_url=database_url), pool_size=1, name="bench-read")
    who = sharing.Audience(scopes=Scopes.everything())
    read = 0
    t0 = time.monotonic()
    try:
        async with engine.connect() as conn:
            cursor = after
            while read < items:
                got, cursor = await sharing.page(conn, who, cursor, 500)
                if not got:
                    break
                read += len(got)
    finally:
        await engine.dispose()
    return read / (time.monotonic() - t0)


async def accept_rate(base: str, key: bytes, body: bytes, count: int) -> float:
    """items/s the receiver takes when one client sends it signed bodies of the same size one after another."""
    items = len(orjson.loads(body)["items"])

    def signed() -> dict[str, str]:
        sent = signing.headers(key, signing.new_delivery_id(), int(time.time()), body)
        return {k.decode(): v.decode() for k, v in sent} | {"content-type": "application/json"}

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await client.post("/raw", content=body, headers=signed())
        t0 = time.monotonic()
        for _ in range(count):
            (await client.post("/raw", content=body, headers=signed())).raise_for_status()
        return count * items / (time.monotonic() - t0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    dbname = await create_db(args.database_dsn, "bench_delivery")
    database_url = f"{args.database_url}/{dbname}"
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(migrate, database_url)
        conn = await asyncpg.connect(f"{args.database_dsn}/{dbname}")
        print(f"generating {args.items:,} items", file=sys.stderr)
        items = envelopes(args.items)
        for i in range(0, len(items), 5000):
            await append(conn, items[i : i + 5000])
        port = find_free_port()
        sid, secret, key = await subscribe(conn, f"http://127.0.0.1:{port}/hook", 0)
        arrivals_file = work / "arrivals.json"
        receiver = start_receiver(port, secret, arrivals_file)
        procs.append(receiver)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(100):
                try:
                    await stats(client)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            env = service_env(database_url, "127.0.0.1:1", TRACE_ADMIN_TOKEN=ADMIN_TOKEN)
            deliver = spawn(["deliver"], env, work / "deliver.log")
            procs.append(deliver)
            print("delivering the backlog", file=sys.stderr)
            await wait_items(client, args.items, args.timeout, deliver)
            backlog = await stats(client)
            throughput = args.items / max(1e-9, backlog["last"] - backlog["first"])

            print(f"writing at {args.rate} items/s for {args.seconds} s", file=sys.stderr)
            commits: dict[int, float] = {}
            fresh = envelopes(int(args.rate * args.seconds))
            per = args.per_commit
            t0 = time.monotonic()
            for k in range(0, len(fresh), per):
                due = t0 + k / args.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                seqs = await append(conn, fresh[k : k + per])
                done = time.time()
                commits.update(dict.fromkeys(seqs, done))
            await wait_items(client, args.items + len(fresh), args.timeout, deliver)
            rss = peak_rss_mb(deliver.pid)
            body = orjson.dumps({"subscription": sid, "items": [
                {"seq": i, "kind": "event", "item": orjson.loads(items[i])} for i in range(500)]})  # fmt: skip
            raw_accept = await accept_rate(base, key, body, args.raw_posts)
        raw_read = await read_rate(database_url, 0, args.items)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        notes = orjson.loads(arrivals_file.read_bytes())
        arrivals = {int(k): v for k, v in notes["arrivals"].items()}
        latencies = [arrivals[s] - c for s, c in commits.items() if s in arrivals]
        await conn.close()
        lat = summary(latencies)
        return {
            "version": code_version(),
            "settings": vars(args),
            "throughput_items_per_s": round(throughput),
            "batches": backlog["batches"],
            "bad_signatures": notes["bad"],
            "latency_s": {k: round(v, 4) if isinstance(v, float) else v for k, v in lat.items()},
            "deliver_peak_rss_mb": round(rss, 1),
            "raw": {"receiver_accept_items_per_s": round(raw_accept), "page_read_items_per_s": round(raw_read)},
            "goals": {
                "throughput": goal(throughput >= 5000),
                "latency_p99": goal(lat["p99"] <= 1.0),
                "rss": goal(rss < 200),
            },
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        await drop_db(args.database_dsn, dbname)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--receiver":
        serve_receiver(int(sys.argv[2]), os.environ["BENCH_WEBHOOK_SECRET"], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="backlog delivered for throughput (100,000)")
    parser.add_argument("--rate", type=float, default=500.0, help="items/s written in the latency phase (500)")
    parser.add_argument("--per-commit", type=int, default=25, help="items per writer transaction (25)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency phase (20)")
    parser.add_argument("--raw-posts", type=int, default=60, help="bodies sent to measure the receiver alone (60)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this long per phase (300)")
    add_runner_options(parser, "delivery")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    raw = result["raw"]
    lat = result["latency_s"]
    rows = [
        ("items/s to one receiver (batches of 500)", f"{result['throughput_items_per_s']:,}",
         f"receiver alone {raw['receiver_accept_items_per_s']:,}; page reads alone {raw['page_read_items_per_s']:,}",
         result["goals"]["throughput"]),
        ("commit -> receiver p50 / p99 / max (s)", f"{lat['p50']:.3f} / {lat['p99']:.3f} / {lat['max']:.3f}",
         f"{lat['n']:,} items at {args.rate:g}/s", result["goals"]["latency_p99"]),
        ("deliver peak RSS (MB)", f"{result['deliver_peak_rss_mb']:.0f}", "", result["goals"]["rss"]),
        ("bad signatures", str(result["bad_signatures"]), f"{result['batches']:,} batches", ""),
    ]  # fmt: skip
    for name, value, limit, ok in rows:
        print(f"{name:42} {value:>24}   {limit:60} {ok}")
    print(f"written to {write_result('delivery', result, args.out)}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
