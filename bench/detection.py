"""Detection quality: the simulator's injected faults against the alerts the service raises.

One run: an embedded broker and a fresh database on the local Postgres server, the API and a worker as
child processes (absence rules settle after ``--settle`` s, unresolved lots alert after ``--grace`` s);
``trace-service simulate`` traffic with anomalies posted through the API with each operator's key (the
``conflicting_duplicate`` copies straight to the broker); then it waits until the worker has applied every
event and the settle and grace periods have passed, reads every alert (``GET /v1/alerts``, paged) and
compares them with the ground truth.

For each integrity rule: a true positive is an alert of that rule whose subject is an injected subject;
an alert of that rule about anything else is a false positive (normal traffic raised it: a simulator bug
or a rule bug); an injected subject without its alert is a false negative. precision = TP / (TP + FP),
recall = TP / (TP + FN); the goal is 1.0 / 1.0. Market alerts are listed apart: the supply shock (judged
only with two earlier same-weekday weeks, so from ``--days 15``) and any other market alert about the
simulated days; alerts about days after them (the silence of today) are counted but not judged.

Usage: ``python -m bench.detection`` (about a minute; ``--days``, ``--scale`` and ``--anomalies`` size it).
Prints a table and writes JSON to ``bench/results/`` (or to ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import (
    add_runner_options,
    create_db,
    drop_db,
    service_env,
    spawn,
    spawn_api,
    stop,
    wait_ready,
    write_result,
)
from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker
from trace_service.settings import Settings
from trace_service.sim import runner
from trace_service.sim.city import build_city
from trace_service.sim.events import RULES, Simulation, simulate


def _alerts(base: str, token: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            query = "?limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            r = client.get("/v1/alerts" + query)
            r.raise_for_status()
            body = r.json()
            items += body["items"]
            cursor = body.get("next_cursor")
            if not cursor:
                return items


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def _wait(dsn: str, sql: str, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = asyncio.run(_count(dsn, sql))
        if n >= target or time.monotonic() > deadline:
            return n
        time.sleep(0.5)


def _stable_alerts(dsn: str, quiet: float, timeout: float) -> int:
    """Wait until the alert table has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = asyncio.run(_count(dsn, "SELECT count(*) + COALESCE(sum(version), 0) FROM alerts"))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n
        time.sleep(0.5)
    return last


def day_totals(sim: Simulation) -> dict[tuple[str, str, str], float]:
    """What the market monitor adds up, as the simulation sent it: kg received per market (a tenant counts
    for its market), product and day, and the city's slaughtered heads (``city``, ``PIG-LIVE``) per day."""
    parent = {op.code: op.parent or op.code for op in sim.city.operators}
    totals: dict[tuple[str, str, str], float] = {}
    for e in sim.events:
        if e["event_type"] == "slaughter.batch_slaughtered":
            key = ("city", "PIG-LIVE", e["occurred_at"][:10])
            totals[key] = totals.get(key, 0.0) + e["data"]["head_count"]
        if e["event_type"] == "trade.received":
            market = parent.get(e["operator"], e["operator"])
            for line in e["data"]["lines"]:
                key = (market, line.get("product_code") or "", e["occurred_at"][:10])
                totals[key] = totals.get(key, 0.0) + line["weight_kg"]
    return totals


def compare(sim: Simulation, truth: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Precision and recall per integrity rule; the market alerts apart."""
    expected = [t for t in truth["truth"] if t["kind"] == "integrity" and t["detectable"]]
    want = {(t["rule"], t["subject_type"], t["subject_code"]) for t in expected}
    rows: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        rows[rule] = {"injected": 0, "alerts": 0, "tp": 0, "fp": 0, "fn": 0, "false_positives": [], "missed": []}
    for t in expected:
        rows[t["rule"]]["injected"] += 1
    got = set()
    for a in alerts:
        if a["rule"] not in rows:
            continue
        key = (a["rule"], a["subject"]["type"], a["subject"]["code"])
        got.add(key)
        row = rows[a["rule"]]
        row["alerts"] += 1
        if key in want:
            row["tp"] += 1
        else:
            row["fp"] += 1
            row["false_positives"].append(
                {"subject": a["subject"], "message": a["message"]["en"], "evidence": a["evidence"]}
            )
    for t in expected:
        if (t["rule"], t["subject_type"], t["subject_code"]) not in got:
            rows[t["rule"]]["fn"] += 1
            rows[t["rule"]]["missed"].append(t)
    for row in rows.values():
        row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else None
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else None
    tp = sum(r["tp"] for r in rows.values())
    fp = sum(r["fp"] for r in rows.values())
    fn = sum(r["fn"] for r in rows.values())

    market_truth = [t for t in truth["truth"] if t["kind"] == "market"]
    market = [a for a in alerts if a["subject"]["type"] == "market"]
    first, last = sim.first_day.isoformat(), sim.last_day.isoformat()
    inside = [a for a in market if first <= str(a["evidence"].get("day", "")) <= last]
    shocks = [
        {**t, "raised": any(a["rule"] == t["rule"] and a["subject"]["code"] == t["subject_code"] for a in market)}
        for t in market_truth
    ]
    shock_codes = {t["subject_code"] for t in market_truth}
    other = [a for a in inside if a["subject"]["code"] not in shock_codes]
    # A shortfall whose cell ended the day inside the band was judged on part of the day's data.
    totals = day_totals(sim)
    partial = []
    for a in other:
        cell = tuple(a["subject"]["code"].split("/"))
        final = totals.get((cell[0], cell[1], cell[2]), 0.0)
        baseline = float(a["evidence"].get("baseline") or 0)
        if a["rule"] in ("supply_drop", "slaughter_drop") and baseline and final >= 0.7 * baseline:
            partial.append({"subject": a["subject"]["code"], "value": a["evidence"].get("value"), "final": final,
                            "baseline": baseline})  # fmt: skip
    return {
        "rules": rows,
        "total": {
            "injected": len(expected),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        },
        "market": {
            "shocks": shocks,
            "other_in_span": [
                {"rule": a["rule"], "subject": a["subject"]["code"], "level": a["level"], "message": a["message"]["en"]}
                for a in other
            ],
            "partial_day": partial,
            "after_span": dict(Counter(a["rule"] for a in market if a not in inside)),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sim = simulate(
        build_city(args.seed, args.scale),
        days=args.days,
        end=date.fromisoformat(args.end) if args.end else None,
        anomalies=args.anomalies,
    )
    runner.describe(sim, lambda m: print(m, file=sys.stderr))
    tmp = Path(tempfile.mkdtemp(prefix="trace-detection-"))
    broker = EmbeddedBroker.start(log_file=tmp / "broker.log")
    dbname = asyncio.run(create_db(args.database_dsn, "trace_detect"))
    database_url = f"{args.database_url}/{dbname}"
    dsn = f"{args.database_dsn}/{dbname}"
    token = secrets.token_urlsafe(24)
    env = service_env(
        database_url, broker.bootstrap, TRACE_ADMIN_TOKEN=token, TRACE_RULE_SETTLE_SECONDS=str(args.settle),
        TRACE_RULE_GRACE_SECONDS=str(args.grace), TRACE_RULE_TICK_SECONDS="0.5",
    )  # fmt: skip
    settings = Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap)
    migrate(database_url)
    asyncio.run(ensure_topics(settings))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        api, base = spawn_api(env, tmp / "api.log")
        procs += [api, spawn(["worker"], env, tmp / "worker.log")]
        asyncio.run(wait_ready(base, procs=procs))
        summary = runner.run_api(
            sim,
            base,
            token,
            window=timedelta(hours=args.window_hours),
            shuffle=args.shuffle,
            batch=args.batch,
            rate=args.rate,
            concurrency=args.concurrency,
            bootstrap=broker.bootstrap,
            topic=settings.topic_events,
        )
        print(summary.render(), file=sys.stderr)
        t0 = time.monotonic()
        applied = _wait(dsn, "SELECT count(*) FROM events", summary.accepted, args.timeout)
        catch_up = time.monotonic() - t0
        time.sleep(max(args.settle, args.grace) + 2)
        _stable_alerts(dsn, quiet=max(3.0, args.settle + 1), timeout=args.timeout)
        alerts = _alerts(base, token)
        truth = runner.truth_document(sim, summary)
        if args.truth:
            runner.write_truth(Path(args.truth), truth)
        result = {
            "simulation": sim.stats(),
            "run": summary.as_json(),
            "applied": applied,
            "catch_up_s": round(catch_up, 2),
            "alerts": len(alerts),
            "alerts_by_rule": dict(Counter(a["rule"] for a in alerts)),
            "comparison": compare(sim, truth, alerts),
        }
    finally:
        stop(procs)
        if not args.keep:
            asyncio.run(drop_db(args.database_dsn, dbname))
        else:
            print(f"kept database {dbname}; logs in {tmp}", file=sys.stderr)
        broker.stop()
    return result


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=2, help="simulated days (default 2; 15+ to judge the shock)")
    parser.add_argument("--scale", choices=["tiny", "small", "city"], default="small", help="default small")
    parser.add_argument("--seed", type=int, default=7, help="default 7")
    parser.add_argument("--anomalies", type=float, default=0.02, help="fault rate (default 0.02)")
    parser.add_argument("--end", help="last simulated day (default yesterday)")
    parser.add_argument("--settle", type=float, default=2.0, help="TRACE_RULE_SETTLE_SECONDS (default 2)")
    parser.add_argument("--grace", type=int, default=20, help="TRACE_RULE_GRACE_SECONDS (default 20)")
    parser.add_argument("--batch", type=int, default=500, help="events per POST (default 500)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--rate", type=float, help="events/s (default: as fast as possible)")
    parser.add_argument(
        "--window-hours", type=float, default=2.0,
        help="simulated hours posted in parallel (default 2; 24 delivers a day out of order)",
    )  # fmt: skip
    parser.add_argument("--shuffle", type=int, metavar="SEED", help="post each window's batches in random order")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the worker (default 600)")
    parser.add_argument("--truth", help="also write the ground truth here")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    add_runner_options(parser, "detection")
    args = parser.parse_args()

    result = run(args)
    cmp = result["comparison"]
    print(
        f"\ndetection: {args.days} day(s) of a {args.scale} city, seed {args.seed}, anomalies {args.anomalies}, "
        f"{result['simulation']['events']:,} events ({result['run']['events_per_s']:,.0f} events/s posted, "
        f"applied {result['catch_up_s']:.1f} s after the last POST), {result['alerts']} alerts, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"  {'rule':<26} {'injected':>8} {'alerts':>6} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>6}")
    for rule, r in cmp["rules"].items():
        print(
            f"  {rule:<26} {r['injected']:>8} {r['alerts']:>6} {r['tp']:>4} {r['fp']:>4} {r['fn']:>4} "
            f"{_f(r['precision']):>9} {_f(r['recall']):>6}"
        )
    t = cmp["total"]
    print(
        f"  {'all integrity rules':<26} {t['injected']:>8} {t['tp'] + t['fp']:>6} {t['tp']:>4} {t['fp']:>4} "
        f"{t['fn']:>4} {_f(t['precision']):>9} {_f(t['recall']):>6}"
    )
    for shock in cmp["market"]["shocks"]:
        judged = "raised" if shock["raised"] else ("NOT raised" if shock["detectable"] else "not judged (no baseline)")
        print(f"  market: {shock['rule']} {shock['subject_code']}: {judged}")
    others = Counter(a["rule"] for a in cmp["market"]["other_in_span"])
    print(f"  market alerts about the simulated days, other than the shock: {dict(others) or 'none'}")
    partial = cmp["market"]["partial_day"]
    if partial:
        print(
            f"    of which {len(partial)} judged on part of a finished day (the day's final total is inside the "
            "band), e.g.:"
        )
        for p in partial[:3]:
            print(f"      {p['subject']}: {p['value']} when judged, {p['final']:.1f} in all, baseline {p['baseline']}")
    if cmp["market"]["after_span"]:
        print(f"  market alerts about later days (today's silence, not judged): {cmp['market']['after_span']}")
    for rule, r in cmp["rules"].items():
        for fp in r["false_positives"][:3]:
            print(f"  FP {rule}: {fp['subject']['code']}: {fp['message']}")
        for fn in r["missed"][:3]:
            print(f"  FN {rule}: {fn['subject_code']}: {fn['note']}")
    out = write_result("detection", {"args": vars(args), "result": result}, args.out)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
