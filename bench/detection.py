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
recall = TP / (TP + FN); the goal is 1.0 / 1.0.

The market rules are scored the same way against the simulator's market shocks (a drop on the last day;
from 16 days on a glut, a price spike and a stock-out on the days before it, each judged only with two
earlier same-weekday weeks), on the alerts about the simulated days: an alert the service withdrew
(resolved by ``system`` once later data refuted it) does not count as raised, and its level must be the
shock's. The late upload of the simulation (a wet market offline from 02:00 to the end of a day) is held
back until the rest has been applied and has settled (``--market-settle`` s, the market monitor's quiet
period), so that the service judges that day without it, and posted then: what it raised meanwhile must
be withdrawn. Alerts about days after the simulated ones (the silence of today) are counted, not scored.

Usage: ``python -m bench.detection`` (about a minute; ``--days``, ``--scale`` and ``--anomalies`` size it;
``--days 30`` judges every market shock). Prints a table and writes JSON to ``bench/results/`` (or to
``--out PATH``).
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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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

SHANGHAI = ZoneInfo("Asia/Shanghai")
MARKET_RULES = ("supply_drop", "supply_surge", "price_spike", "stock_out", "slaughter_drop")


def withdrawn(alert: dict[str, Any]) -> bool:
    """Resolved by the service itself: later data refuted it (or, for upstream_missing, the lot arrived)."""
    return alert["status"] == "resolved" and (alert.get("resolved") or {}).get("by") == "system"


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

    market = [a for a in alerts if a["subject"]["type"] == "market" and a["rule"] in MARKET_RULES]
    first, last = sim.first_day.isoformat(), sim.last_day.isoformat()
    inside = [a for a in market if first <= str(a["evidence"].get("day", "")) <= last]
    shocks = [t for t in truth["truth"] if t["kind"] == "market"]
    wanted = {(t["rule"], t["subject_code"]): t for t in shocks if t["detectable"]}
    market_rows: dict[str, dict[str, Any]] = {
        rule: {"injected": 0, "alerts": 0, "tp": 0, "fp": 0, "fn": 0, "withdrawn": 0, "wrong_level": [],
               "false_positives": [], "missed": []}
        for rule in MARKET_RULES
    }  # fmt: skip
    for t in wanted.values():
        market_rows[t["rule"]]["injected"] += 1
    raised: set[tuple[str, str]] = set()
    for a in inside:
        row = market_rows[a["rule"]]
        if withdrawn(a):
            row["withdrawn"] += 1
            continue
        key = (a["rule"], a["subject"]["code"])
        raised.add(key)
        row["alerts"] += 1
        if key in wanted:
            row["tp"] += 1
            if wanted[key].get("level") and a["level"] != wanted[key]["level"]:
                row["wrong_level"].append({"subject": key[1], "level": a["level"], "want": wanted[key]["level"]})
        else:
            row["fp"] += 1
            row["false_positives"].append(
                {"subject": a["subject"]["code"], "level": a["level"], "message": a["message"]["en"]}
            )
    for key, t in wanted.items():
        if key not in raised:
            market_rows[t["rule"]]["fn"] += 1
            market_rows[t["rule"]]["missed"].append(t)
    for row in market_rows.values():
        row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else None
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else None
    # The late upload's cells: what the service raised while the records were missing, and what remains.
    late = []
    for t in truth["truth"]:
        if t["kind"] != "late_upload":
            continue
        market_code, _, day = t["subject_code"].split("/")
        cells = [a for a in inside if a["subject"]["code"].startswith(f"{market_code}/")
                 and a["subject"]["code"].endswith(f"/{day}")]  # fmt: skip
        late.append(
            {
                **t,
                "withdrawn": sum(1 for a in cells if withdrawn(a)),
                "remaining": [a["subject"]["code"] for a in cells if not withdrawn(a)],
                "notes": [(a.get("resolved") or {}).get("note") for a in cells if withdrawn(a)][:2],
            }
        )
    # A shortfall still standing whose cell ended the day inside the band was judged on part of its data.
    totals = day_totals(sim)
    partial = []
    for a in inside:
        cell = tuple(a["subject"]["code"].split("/"))
        if withdrawn(a) or (a["rule"], a["subject"]["code"]) in wanted:
            continue
        final = totals.get((cell[0], cell[1], cell[2]), 0.0)
        baseline = float(a["evidence"].get("baseline") or 0)
        if a["rule"] in ("supply_drop", "slaughter_drop") and baseline and final >= 0.7 * baseline:
            partial.append({"subject": a["subject"]["code"], "value": a["evidence"].get("value"), "final": final,
                            "baseline": baseline})  # fmt: skip
    m_tp = sum(r["tp"] for r in market_rows.values())
    m_fp = sum(r["fp"] for r in market_rows.values())
    m_fn = sum(r["fn"] for r in market_rows.values())
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
            "rules": market_rows,
            "total": {
                "injected": len(wanted),
                "tp": m_tp,
                "fp": m_fp,
                "fn": m_fn,
                "withdrawn": sum(r["withdrawn"] for r in market_rows.values()),
                "precision": m_tp / (m_tp + m_fp) if m_tp + m_fp else None,
                "recall": m_tp / (m_tp + m_fn) if m_tp + m_fn else None,
            },
            "shocks": shocks,
            "late_uploads": late,
            "partial_day": partial,
            "after_span": dict(Counter(a["rule"] for a in market if a not in inside)),
        },
    }


def _last_over_day() -> date:
    """Yesterday, unless it is not over for the market monitor yet (its last hour ends 30 min after midnight,
    and the run takes minutes): then the day before, so that the last simulated day is judged on its totals
    within the run."""
    return (datetime.now(SHANGHAI) - timedelta(hours=1)).date() - timedelta(days=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sim = simulate(
        build_city(args.seed, args.scale),
        days=args.days,
        end=date.fromisoformat(args.end) if args.end else _last_over_day(),
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
        TRACE_MARKET_SETTLE_QUIET_SECONDS=str(args.market_settle),
    )  # fmt: skip
    settle_all = max(args.settle, args.grace, args.market_settle)
    settings = Settings(database_url=database_url, kafka_bootstrap=broker.bootstrap)
    migrate(database_url)
    asyncio.run(ensure_topics(settings))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {}
    try:
        api, base = spawn_api(env, tmp / "api.log")
        procs += [api, spawn(["worker"], env, tmp / "worker.log")]
        asyncio.run(wait_ready(base, procs=procs))
        on_time = len(sim.events) - len(sim.late_ids())

        def judged_without_the_late_upload() -> None:
            """The market offline until now: let the service apply and judge everything else first."""
            _wait(dsn, "SELECT count(*) FROM events", on_time, args.timeout)
            time.sleep(args.market_settle + 2)
            _stable_alerts(dsn, quiet=3.0, timeout=args.timeout)

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
            hold_late=judged_without_the_late_upload if args.late == "last" else None,
        )
        print(summary.render(), file=sys.stderr)
        t0 = time.monotonic()
        applied = _wait(dsn, "SELECT count(*) FROM events", summary.accepted, args.timeout)
        catch_up = time.monotonic() - t0
        time.sleep(settle_all + 2)
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
    parser.add_argument("--end", help="last simulated day (default yesterday; before 01:00 the day before)")
    parser.add_argument("--settle", type=float, default=2.0, help="TRACE_RULE_SETTLE_SECONDS (default 2)")
    parser.add_argument("--grace", type=int, default=20, help="TRACE_RULE_GRACE_SECONDS (default 20)")
    parser.add_argument(
        "--market-settle", type=float, default=10.0,
        help="TRACE_MARKET_SETTLE_QUIET_SECONDS: a day is judged once nothing for it arrived this long (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--late", choices=["last", "inline"], default="last",
        help="the late upload: posted after the rest has settled (default), or in time order with the rest",
    )  # fmt: skip
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
    m = cmp["market"]
    mode = f"shuffled (seed {args.shuffle})" if args.shuffle is not None else "in time order"
    print(f"\n  market rules, {args.window_hours:g} h windows {mode}, late upload {args.late}, quiet period "
          f"{args.market_settle:g} s")  # fmt: skip
    print(
        f"  {'rule':<26} {'injected':>8} {'alerts':>6} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>6} "
        f"{'withdrawn':>9}"
    )
    for rule, r in m["rules"].items():
        print(
            f"  {rule:<26} {r['injected']:>8} {r['alerts']:>6} {r['tp']:>4} {r['fp']:>4} {r['fn']:>4} "
            f"{_f(r['precision']):>9} {_f(r['recall']):>6} {r['withdrawn']:>9}"
        )
    t = m["total"]
    print(
        f"  {'all market rules':<26} {t['injected']:>8} {t['tp'] + t['fp']:>6} {t['tp']:>4} {t['fp']:>4} "
        f"{t['fn']:>4} {_f(t['precision']):>9} {_f(t['recall']):>6} {t['withdrawn']:>9}"
    )
    for shock in m["shocks"]:
        if not shock["detectable"]:
            print(f"  market: {shock['rule']} {shock['subject_code']}: not judged (no baseline)")
    for r in m["rules"].values():
        for wrong in r["wrong_level"]:
            print(f"  market: {wrong['subject']} raised at level {wrong['level']}, the shock is {wrong['want']}")
        for fp in r["false_positives"][:3]:
            print(f"  market FP: {fp['subject']} ({fp['level']}): {fp['message']}")
        for fn in r["missed"][:3]:
            print(f"  market FN: {fn['rule']} {fn['subject_code']}: {fn['note']}")
    for up in m["late_uploads"]:
        print(
            f"  late upload {up['subject_code']}: {up['withdrawn']} alert(s) withdrawn once it arrived, "
            f"{len(up['remaining'])} remaining"
        )
        for note in up["notes"][:1]:
            print(f"    e.g. {note}")
    partial = m["partial_day"]
    if partial:
        print(f"    {len(partial)} shortfall(s) judged on part of a finished day (its final total is inside the band):")
        for p in partial[:3]:
            print(f"      {p['subject']}: {p['value']} when judged, {p['final']:.1f} in all, baseline {p['baseline']}")
    if m["after_span"]:
        print(f"  market alerts about later days (today's silence, not judged): {m['after_span']}")
    for rule, r in cmp["rules"].items():
        for fp in r["false_positives"][:3]:
            print(f"  FP {rule}: {fp['subject']['code']}: {fp['message']}")
        for fn in r["missed"][:3]:
            print(f"  FN {rule}: {fn['subject_code']}: {fn['note']}")
    out = write_result("detection", {"args": vars(args), "result": result}, args.out)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
