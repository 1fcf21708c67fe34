"""Fault soak: `trace-service dev` under a steady posting load while a random child is SIGKILLed every so often.

The load is ``produce.harvested`` events, each creating a fresh lot of a known weight, posted in batches by a
few clients at a fixed rate. A batch not answered 202 is posted again with the same ids until it is, as a
client would. Every ``--kill-every`` seconds one of the API, the worker, the broker (tansu) or the embedded
PostgreSQL is SIGKILLed, in rounds of a random order so that each is hit (found through ``/proc`` by parent
pid and command line, killed by pid), and the soak waits for the service to recover before the next kill.

After the load the soak waits for the service to apply what it accepted (``--drain`` seconds at most), then
prints and writes to JSON:

* events sent, accepted (answered 202), applied;
* lost: accepted but not applied after the drain; duplicated: lots whose kg is not what was sent (an event
  applied twice would count twice), and event rows beyond one per id;
* kills by process, and how many the service survived (within ``--recover`` seconds: a new process in the
  place of the one killed, and an event accepted after the kill applied), with the time each recovery took;
* throughput: accepted events/s over the load, applied events/s until the last one was applied;
* what the service did about it: restarts and events produced again from the intake ledger (from dev's log).

Usage: ``python -m bench.faults --minutes 5`` (``--help`` for the rest). Uses its own data folder (removed
at the end unless ``--keep``), so the embedded Postgres and broker are its own; dev's log goes to
``bench/results/faults-<time>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import RESULTS, code_version, pct, wait_ready, write_result
from trace_service.runtime import procs
from trace_service.runtime.embedded import find_free_port

TARGETS = ("api", "worker", "broker", "postgres")


def _postmaster(pgdata: Path) -> tuple[int, Path] | None:
    found = procs.postmaster(pgdata)
    return found if found is not None and procs.alive(found[0]) else None


def _pid_of(dev: int, pgdata: Path, role: str) -> int | None:
    if role == "postgres":
        found = _postmaster(pgdata)
        return found[0] if found else None
    return procs.child(dev, role)


# -- the load --------------------------------------------------------------------------------------------------


class Load:
    """Clients posting fresh produce lots at a fixed total rate; batches are posted until accepted."""

    def __init__(self, base: str, key: str, operator: str, rate: float, batch: int, clients: int) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
        self.operator = operator
        self.batch = batch
        self.clients = clients
        self.interval = batch * clients / rate  # each client posts one batch per interval
        self.sent: dict[str, tuple[str, Decimal]] = {}
        self.accepted: set[str] = set()
        self.refusals: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.last_accept = 0.0
        self.last_accepted_id = ""
        self.unaccepted_batches = 0
        self.stopping = asyncio.Event()

    def _event(self) -> dict[str, Any]:
        lot = "SOAK" + uuid.uuid4().hex[:20].upper()
        kg = Decimal(random.randint(1000, 999_999)) / 1000
        eid = str(uuid.uuid4())
        self.sent[eid] = (lot, kg)
        return {
            "event_id": eid,
            "event_type": "produce.harvested",
            "occurred_at": "2026-11-25T05:10:00+08:00",
            "operator": self.operator,
            "data": {
                "lot": lot,
                "base_code": self.operator,
                "product_code": "VEG-CHOYSUM",
                "product_name": "菜心",
                "weight_kg": float(kg),
                "compliance_cert_number": "HG-2026-000123",
                "origin_region": "442000",
                "harvested_at": "2026-11-25T04:30:00+08:00",
            },
        }

    async def _client(self, http: httpx.AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + random.random() * self.interval
        while not self.stopping.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.interval
            events = [self._event() for _ in range(self.batch)]
            if not await self._post(http, events):
                self.unaccepted_batches += 1
            # A long outage leaves the schedule behind: resume at the rate, do not burst to catch up.
            next_at = max(next_at, loop.time())

    async def _post(self, http: httpx.AsyncClient, events: list[dict[str, Any]]) -> bool:
        body = orjson.dumps(events)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 300
        while loop.time() < give_up:
            t0 = time.monotonic()
            try:
                r = await http.post("/v1/events", content=body, headers=self.headers)
            except httpx.TransportError as exc:
                self.refusals[type(exc).__name__] += 1
            else:
                if r.status_code == 202:
                    self.latencies.append(time.monotonic() - t0)
                    self.accepted.update(e["event_id"] for e in events)
                    self.last_accept = time.monotonic()
                    self.last_accepted_id = events[-1]["event_id"]
                    return True
                if r.status_code < 500:
                    raise RuntimeError(f"the service refused the load itself: {r.status_code} {r.text[:500]}")
                self.refusals[str(r.status_code)] += 1
            await asyncio.sleep(0.25)
        return False

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.clients)))


# -- the soak --------------------------------------------------------------------------------------------------


def _start_dev(data_dir: Path, port: int, log: Path, redeliver_after: float | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env["TRACE_LOG_LEVEL"] = "warning"
    if redeliver_after is not None:
        env["TRACE_REDELIVER_AFTER_SECONDS"] = str(redeliver_after)
    argv = [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)]
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _register(base: str, token: str) -> tuple[str, str]:
    op = "SOAK" + uuid.uuid4().hex[:8].upper()
    admin = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = {"code": op, "name": "压测基地", "kind": "planting_base", "region": "442000"}
        r = await http.post("/v1/operators", json=body, headers=admin)
        r.raise_for_status()
        r = await http.post(f"/v1/operators/{op}/keys", json={"name": "soak"}, headers=admin)
        r.raise_for_status()
        return op, str(r.json()["key"])


async def _connect(pgdata: Path, timeout: float = 60.0) -> asyncpg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        found = _postmaster(pgdata)
        if found is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                return await asyncpg.connect(host=str(found[1]), user="postgres", database="trace")
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not connect to the embedded PostgreSQL in {pgdata}")
        await asyncio.sleep(0.5)


async def _is_applied(pgdata: Path, event_id: str) -> bool:
    """One look, no waiting: False while Postgres is away."""
    found = _postmaster(pgdata)
    if found is None:
        return False
    try:
        conn = await asyncpg.connect(host=str(found[1]), user="postgres", database="trace", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return bool(await conn.fetchval("SELECT true FROM events WHERE event_id = $1", uuid.UUID(event_id)))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    finally:
        conn.terminate()


async def _applied(pgdata: Path, ids: list[uuid.UUID]) -> int:
    conn = await _connect(pgdata)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids))
    finally:
        await conn.close()


async def _killer(
    args: argparse.Namespace, dev: subprocess.Popen[bytes], pgdata: Path, load: Load, kills: list[dict[str, Any]]
) -> None:
    rng = random.Random(args.seed)
    loop = asyncio.get_running_loop()
    order: list[str] = []
    while not load.stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.stopping.wait(), timeout=args.kill_every)
            return
        if not order:  # rounds in random order: every target is hit within a round
            order = list(args.targets)
            rng.shuffle(order)
        role = order.pop()
        pid = _pid_of(dev.pid, pgdata, role)
        if pid is None:
            kills.append({"target": role, "pid": None, "survived": False, "note": "no such process"})
            continue
        os.kill(pid, signal.SIGKILL)
        t0 = loop.time()
        killed_at = time.monotonic()
        print(f"  {time.strftime('%H:%M:%S')} SIGKILL {role} (pid {pid})", flush=True)
        # Survived: a new process in its place, the API accepting events again, and an event accepted after
        # the kill applied.
        survived = False
        probe: str | None = None
        while loop.time() - t0 < args.recover:
            new = _pid_of(dev.pid, pgdata, role)
            if probe is None and new is not None and new != pid and load.last_accept > killed_at:
                probe = load.last_accepted_id
            if probe is not None and await _is_applied(pgdata, probe):
                survived = True
                break
            await asyncio.sleep(0.5)
        recovered_s = loop.time() - t0
        kills.append({"target": role, "pid": pid, "survived": survived, "recovered_s": round(recovered_s, 1)})
        print(f"           {'recovered' if survived else 'NOT recovered'} in {recovered_s:.1f} s", flush=True)


def _from_log(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace")
    redelivered = sum(int(n) for n in re.findall(r"ledger_redelivered\s+count=(\d+)", text))
    restarts = collections.Counter(re.findall(r"the (API|worker|broker) (?:exited|\(pid \d+\) died)", text))
    return {
        "redelivered_from_ledger": redelivered,
        "restarted_api": restarts["API"],
        "restarted_worker": restarts["worker"],
        "restarted_broker": restarts["broker"],
        "restarted_postgres": len(re.findall(r"PostgreSQL \(pid \d+\) died", text)),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="trace-faults-"))
    data_dir = root / "data"
    pgdata = data_dir / "postgres"
    # The log outlives the temporary folder: next to the JSON results.
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    dev = _start_dev(data_dir, port, log, args.redeliver_after)
    kills: list[dict[str, Any]] = []
    result: dict[str, Any] = {"code": code_version(), "data_dir": str(root), "log": str(log)}
    try:
        await wait_ready(base, timeout=180, procs=[dev])
        token = (data_dir / "admin-token").read_text().strip()
        op, key = await _register(base, token)
        load = Load(base, key, op, args.rate, args.batch, args.clients)
        print(
            f"soak: {args.minutes:g} min at {args.rate:g} events/s, a SIGKILL every {args.kill_every:g} s", flush=True
        )
        t_start = time.monotonic()
        load_task = asyncio.create_task(load.run())
        killer = asyncio.create_task(_killer(args, dev, pgdata, load, kills))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(load_task), timeout=args.minutes * 60)
        load.stopping.set()
        await killer
        await load_task  # the batches in hand are posted until accepted
        t_load = time.monotonic() - t_start
        print(f"load done after {t_load:.0f} s; waiting for the service to apply what it accepted", flush=True)

        ids = [uuid.UUID(i) for i in load.accepted]
        deadline = time.monotonic() + args.drain
        applied = await _applied(pgdata, ids)
        last_count, t_last = applied, time.monotonic()
        while applied < len(ids) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            applied = await _applied(pgdata, ids)
            if applied != last_count:
                last_count, t_last = applied, time.monotonic()

        conn = await _connect(pgdata)
        try:
            sent_lots = dict(load.sent.values())
            rows = await conn.fetch("SELECT code, kg_in FROM lots WHERE code = ANY($1::text[])", list(sent_lots))
            wrong_kg = sum(1 for r in rows if r["kg_in"] != sent_lots[r["code"]])
            extra_rows = int(
                await conn.fetchval(
                    "SELECT count(*) - count(DISTINCT event_id) FROM events WHERE event_id = ANY($1::uuid[])",
                    [uuid.UUID(i) for i in load.sent],
                )
            )
            applied_not_accepted = int(
                await conn.fetchval(
                    "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])",
                    [uuid.UUID(i) for i in load.sent if i not in load.accepted],
                )
            )
            ledger_left = int(await conn.fetchval("SELECT count(*) FROM intake"))
        finally:
            await conn.close()

        by_target: dict[str, dict[str, int]] = {t: {"kills": 0, "survived": 0} for t in args.targets}
        for k in kills:
            by_target[k["target"]]["kills"] += 1
            by_target[k["target"]]["survived"] += int(k["survived"])
        result.update(
            {
                "minutes": args.minutes,
                "rate": args.rate,
                "batch": args.batch,
                "clients": args.clients,
                "kill_every_s": args.kill_every,
                "load_s": round(t_load, 1),
                "sent": len(load.sent),
                "accepted": len(load.accepted),
                "applied": applied,
                "lost": len(ids) - applied,
                "duplicated": wrong_kg + extra_rows,
                "lots_with_wrong_kg": wrong_kg,
                "extra_event_rows": extra_rows,
                "applied_without_202": applied_not_accepted,
                "batches_never_accepted": load.unaccepted_batches,
                "ledger_rows_left": ledger_left,
                "refusals": dict(load.refusals),
                "kills": kills,
                "kills_by_target": by_target,
                "accepted_per_s": len(load.accepted) / t_load,
                "applied_per_s": applied / max(1e-9, t_last - t_start),
                "drained_s_after_load": round(max(0.0, t_last - t_start - t_load), 1),
                "post_latency_s": {"p50": pct(load.latencies, 0.5), "p99": pct(load.latencies, 0.99)},
                **_from_log(log),
            }
        )
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(90)
            except subprocess.TimeoutExpired:
                dev.kill()
        if not args.keep and not args.data_dir:
            shutil.rmtree(root, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> None:
    latency = r["post_latency_s"]
    rows = [
        ("events sent", f"{r['sent']:,}"),
        ("accepted (202)", f"{r['accepted']:,}"),
        ("applied", f"{r['applied']:,}"),
        ("lost (accepted, never applied)", f"{r['lost']:,}"),
        ("duplicated (applied twice)", f"{r['duplicated']:,}"),
        ("applied without a 202 (client saw an error)", f"{r['applied_without_202']:,}"),
        ("produced again from the ledger", f"{r['redelivered_from_ledger']:,}"),
        ("ledger rows left at the end", f"{r['ledger_rows_left']:,}"),
        ("throughput accepted / applied", f"{r['accepted_per_s']:,.0f} / {r['applied_per_s']:,.0f} events/s"),
        (
            "POST latency p50 / p99",
            f"{latency['p50'] * 1000:.0f} / {latency['p99'] * 1000:.0f} ms",
        ),
        ("refused posts (retried)", ", ".join(f"{k} {v}" for k, v in sorted(r["refusals"].items())) or "none"),
    ]
    for target, n in r["kills_by_target"].items():
        took = [k["recovered_s"] for k in r["kills"] if k["target"] == target and k["survived"]]
        slowest = f", recovered in {min(took):.1f}-{max(took):.1f} s" if took else ""
        rows.append((f"SIGKILL {target}", f"{n['kills']} killed, {n['survived']} survived{slowest}"))
    width = max(len(a) for a, _ in rows)
    print()
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    commit = r.get("code", {}).get("commit", "(not a git checkout)")
    print(f"\ncommit {commit}; dev log {r['log']}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the load (default 5)")
    parser.add_argument("--rate", type=float, default=500.0, help="events posted per second (default 500)")
    parser.add_argument("--batch", type=int, default=50, help="events per POST (default 50)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent posting clients (default 2)")
    parser.add_argument("--kill-every", type=float, default=25.0, help="seconds between two kills (default 25)")
    parser.add_argument(
        "--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="what may be killed (default all)"
    )
    parser.add_argument("--recover", type=float, default=120.0, help="seconds a recovery may take (default 120)")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the last events (default 300)")
    parser.add_argument(
        "--redeliver-after",
        type=float,
        default=None,
        help="TRACE_REDELIVER_AFTER_SECONDS for the service (default: the service's own, 30 s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill order")
    parser.add_argument("--data-dir", help="use this folder (kept) instead of a fresh temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder and log")
    parser.add_argument("--out", metavar="PATH", help="write the result JSON to PATH instead of bench/results/")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result)
    out = write_result("faults", {"args": vars(args), "result": result}, args.out)
    print(f"JSON: {out}")
    if result["lost"] or result["duplicated"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
