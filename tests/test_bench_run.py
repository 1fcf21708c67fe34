"""The pure parts of the benchmark runner ``bench/run.py``: the table, the order of the COPY limit's tables, the
requests of the end-to-end shapes and how they are kept in flight, the rows picked from the other runners' JSON
and the shape of the result document. Nothing here measures."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from bench.run import (
    BULK_SPAN,
    BULK_WINDOW,
    Row,
    Session,
    alerts_rows,
    copy_tables,
    detection_rows,
    e2e_label,
    fk_order,
    format_table,
    ingest_notes,
    ingest_rows,
    lineage_rows,
    parse_args,
    requests,
    result_document,
    scale_notes,
    scale_rows,
    shape_windows,
    storage_row,
)
from trace_service.sim import runner


def test_table_aligns_columns_groups_sections_and_shows_the_verdict() -> None:
    rows = [
        Row("ingest", "end to end", "9,000 events/s", "15% of raw produce", ">= 10,000 events/s", False),
        Row("ingest", "  peak RSS", "110 MB", "", "< 300 MB", True),
        Row("scale", "2 workers, 8 partitions", "4,000 events/s", "90% of 1 worker"),
    ]
    text = format_table(rows, {"scale": ["2 cores"]})
    lines = text.splitlines()
    assert lines[0].split() == ["figure", "value", "raw", "limit", "/", "ratio", "goal"]
    assert lines[1] == "ingest:"
    assert lines[2].endswith(">= 10,000 events/s: MISSED")
    assert lines[3].endswith("< 300 MB: met")
    assert lines[4] == "scale:"
    assert lines[5].endswith("90% of 1 worker")  # no goal, no verdict, no trailing blanks
    assert lines[6] == "  note: 2 cores"
    # The values are right-aligned in one column.
    valued = [(lines[2], "9,000 events/s"), (lines[3], "110 MB"), (lines[5], "4,000 events/s")]
    assert len({line.index(value) + len(value) for line, value in valued}) == 1


def test_notes_of_a_section_without_rows_are_printed() -> None:
    assert format_table([], {"run": ["trace_service changed"]}).splitlines()[1:] == [
        "run:",
        "  note: trace_service changed",
    ]


def test_fk_order_puts_parents_first_ignores_self_references_and_refuses_cycles() -> None:
    parents = {
        "edges": {"lots"},
        "sales": {"lots"},
        "shipment_lines": {"shipments", "lots"},
        "alert_events": {"alerts"},
        "lots": {"lots"},  # a self-reference does not hold a table back
    }
    order = fk_order(["shipment_lines", "sales", "edges", "lots", "shipments", "alert_events", "alerts"], parents)
    assert order == ["alerts", "lots", "shipments", "alert_events", "edges", "sales", "shipment_lines"]
    assert fk_order(["edges"], parents) == ["edges"]  # a parent not copied is no constraint
    with pytest.raises(ValueError, match="cycle"):
        fk_order(["a", "b"], {"a": {"b"}, "b": {"a"}})


async def test_copy_tables_lists_the_filled_tables_of_the_worker_in_foreign_key_order(
    db: asyncpg.Connection,
) -> None:
    tx = db.transaction()
    await tx.start()
    try:
        ids = await db.fetch("INSERT INTO lots (code) VALUES ('RUNTEST-P'), ('RUNTEST-C') RETURNING id")
        await db.execute(
            "INSERT INTO edges (parent_id, child_id, event_id) VALUES ($1, $2, gen_random_uuid())",
            ids[0]["id"],
            ids[1]["id"],
        )
        await db.execute(
            "INSERT INTO alerts (id, rule, severity, subject_type, subject_code, message_zh, message_en) "
            "VALUES ('runtest', 'r', 'high', 'lot', 'RUNTEST-P', '测试', 'test')"
        )
        await db.execute("INSERT INTO alert_events (event_id, alert_id) VALUES (gen_random_uuid(), 'runtest')")
        tables = await copy_tables(db)
        fks = await db.fetch(
            "SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid <> confrelid"
        )
    finally:
        await tx.rollback()
    assert {"lots", "edges", "alerts", "alert_events"} <= set(tables)
    assert not {"operators", "api_keys", "alembic_version"} & set(tables)
    for fk in fks:
        if fk["child"] in tables and fk["parent"] in tables:
            assert tables.index(fk["parent"]) < tables.index(fk["child"]), fk


def _apply(rate: float, workers: int = 1, partitions: int = 4) -> dict[str, Any]:
    names = ["worker"] if workers == 1 else [f"worker{i}" for i in range(workers)]
    return {
        "workers": workers,
        "partitions": partitions,
        "messages": 1000,
        "events_per_s": rate,
        "members_at_first_commit": workers,
        "max_stall_s": 0.2,
        "events": 1000,
        "dead_letters": 0,
        "cpu": {**{f"{n}_cores": 0.5 for n in names}, "postgres_cores": 0.6, "machine_busy": 0.7},
        "peak_rss_mb": dict.fromkeys(names, 120.0),
        "log_warnings": {},
    }


def _e2e(rate: float, per_request: float, rss_api: float = 120.0) -> dict[str, Any]:
    cpu = {f"{n}_cores": 0.3 for n in ("api", "worker", "postgres", "broker", "bench")} | {"machine_busy": 0.9}
    return {
        "batch": 1000,
        "window_events": 50_000,
        "events_per_s": rate,
        "post_events_per_s": rate * 1.2,
        "requests": 10,
        "events_per_request": per_request,
        "post_ms": {"p50": 20.0, "p99": 80.0},
        "retries": 0,
        "peak_rss_mb": {"api": rss_api, "worker": 120.0},
        "cpu": cpu,
        "backlog_at_last_post": 7,
        "tail_s": 0.5,
        "rejected": 0,
        "first_errors": [],
        "dead_letters": 0,
        "events_applied": 1000,
        "accepted": 1000,
        "intake_left": 0,
        "log_warnings": {},
    }


def _storage(autovacuum: str = "off") -> dict[str, Any]:
    return {
        "database_bytes": 300 * 2**20,
        "events": 157_000,
        "bytes_per_event": 300 * 2**20 / 157_000,
        "events_table_bytes": 90 * 2**20,
        "template_bytes": 8 * 2**20,
        "tables": {"events": 150 * 2**20, "lots": 60 * 2**20},
        "autovacuum": autovacuum,
    }


def test_ingest_rows_judge_the_goals_of_issue_5() -> None:
    data = {
        "produce": {"partitions": 4, "events_per_s": 60_000.0},
        "apply": {"on": _apply(3_000.0), "off": _apply(4_000.0)},
        "storage": _storage(),
        "copy": {"source_mode": "on", "events_per_s": 12_000.0, "rows_per_s": 90_000.0, "rows": 5, "tables": {"a": 5}},
        "e2e": _e2e(500.0, 14.1),
        "e2e_bulk": _e2e(12_000.0, 800.0, rss_api=310.0),
    }
    rows = ingest_rows(data)
    verdicts = {r.figure.strip(): r.met for r in rows}
    assert verdicts["worker apply, rules on"] is False  # 25 % of COPY
    assert verdicts["worker apply, rules off"] is None  # its rows were not the ones COPY'd
    assert next(r for r in rows if "rule cost" in r.figure).value == "25%"
    # Both shapes have their rows; the events/s goal is judged on bulk only, the RSS goal on both.
    figures = [r.figure for r in rows]
    reporters = figures.index("end to end (reporters' requests)")
    bulk = figures.index("end to end (bulk, ≤1000-event requests)")
    assert reporters < bulk
    assert (rows[reporters].value, rows[reporters].met) == ("500 events/s", None)
    assert rows[reporters].verdict == "(the bulk row judges it)"
    assert (rows[bulk].met, rows[bulk].verdict) == (True, "≥ 10,000 events/s: met")
    assert rows[reporters].limit == "1% of raw produce"
    rss = [r for r in rows if r.figure.strip() == "peak RSS API / worker"]
    assert [r.met for r in rss] == [True, False]  # the bulk run's API is over 300 MB
    assert figures[bulk - 5 : bulk] == figures[bulk + 1 :]  # the same sub-rows under each shape
    # The storage of the day, after the apply rows and before the end-to-end ones.
    assert figures.index("storage after the day") < reporters


def test_storage_row_gives_the_size_per_event_and_says_when_dead_tuples_are_in_it() -> None:
    row = storage_row(_storage("off"))
    assert (row.figure, row.value) == ("storage after the day", "300 MB, 2,004 bytes/event")
    assert row.limit == "events table 30%; incl. dead tuples (autovacuum off)"
    assert (row.goal, row.met) == ("", None)
    assert storage_row(_storage("on")).limit == "events table 30%"


def test_only_the_shapes_run_have_rows() -> None:
    figures = [r.figure for r in ingest_rows({"e2e_bulk": _e2e(9_000.0, 900.0)})]
    assert figures[0] == "end to end (bulk, ≤1000-event requests)"
    assert not any("reporters" in f for f in figures)
    assert next(r for r in ingest_rows({"e2e_bulk": _e2e(9_000.0, 900.0)})).met is False


def test_ingest_notes_list_what_went_wrong() -> None:
    apply = {**_apply(3_000.0), "events": 990, "dead_letters": 10, "log_warnings": {"retrying": 2}}
    e2e = {**_e2e(500.0, 9.4), "rejected": 5, "first_errors": ["HTTP 422: ..."], "events_applied": 995, "accepted": 995}
    bulk = {**_e2e(12_000.0, 812.3), "intake_left": 4}
    notes = ingest_notes({"apply": {"on": apply}, "e2e": e2e, "e2e_bulk": bulk})
    assert notes[0] == "apply on: the worker logged retrying x2"
    assert notes[1] == "apply on: 990 events and 10 dead letters for 1,000 messages"
    assert notes[2] == "e2e reporters: 5 events rejected, e.g. HTTP 422: ..."
    assert notes[3].startswith("e2e reporters posts the simulator's traffic as its reporters would: 9.4 events")
    assert notes[4] == "e2e bulk: 4 intake rows left after the last event was applied"
    assert notes[5] == (
        "e2e bulk posts the same events in time order, in windows of 50,000 events, each poster's events of a "
        "window in requests of at most 1,000: 812.3 events a request on average"
    )
    assert len(notes) == 6


def _events(n: int, step: timedelta, operators: tuple[str, ...]) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 25, tzinfo=UTC)
    return [
        {
            "occurred_at": (start + i * step).isoformat(),
            "operator": operators[i % len(operators)],
            "event_type": "regulator.inspected" if i % 10 == 9 else "retail.sold",
            "n": i,
        }
        for i in range(n)
    ]


def test_the_shapes_cut_the_same_events_into_different_requests() -> None:
    events = _events(60, timedelta(minutes=10), ("S1", "S2", "W1"))  # 10 simulated hours
    poster_of = {"S1": "M1", "S2": "M1", "W1": "W1"}  # S1 and S2 post through their market
    assert shape_windows("reporters", 4, 2) == (16, runner.MAX_WINDOW)
    assert shape_windows("bulk", 4, 2) == (BULK_WINDOW, BULK_SPAN)

    reporters = list(requests(events, poster_of, 4, *shape_windows("reporters", 4, 2)))
    bulk = list(requests(events, poster_of, 4, *shape_windows("bulk", 4, 2)))
    for shape in (reporters, bulk):
        assert sorted(e["n"] for _, items in shape for e in items) == list(range(60))  # every event once
        assert all(1 <= len(items) <= 4 for _, items in shape)
        for poster, items in shape:
            regulator = [e["event_type"].startswith("regulator.") for e in items]
            assert all(regulator) if poster == runner.ADMIN else not any(regulator)
            assert poster == runner.ADMIN or {poster_of[e["operator"]] for e in items} == {poster}
            assert [e["n"] for e in items] == sorted(e["n"] for e in items)  # a poster's events in time order
    # Reporters: windows of at most 2 h (12 events here), a request never spans two; bulk: one window, so a
    # poster's requests are full but the last.
    assert all(len({e["n"] // 12 for e in items}) == 1 for _, items in reporters)
    assert any(len({e["n"] // 12 for e in items}) > 1 for _, items in bulk)
    assert len(reporters) > len(bulk)
    assert {p for p, _ in bulk} == {"M1", "W1", runner.ADMIN}
    assert [len(i) for p, i in bulk if p == "M1"] == [4] * 9  # 36 events in requests of 4
    assert [p for p, _ in bulk][:1] == ["M1"]  # the posters in order of their first event


async def test_post_keeps_the_requests_in_flight_across_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow request of one window does not hold the next window back; no more than ``--concurrency`` are in
    flight; a 503 is retried after its Retry-After."""
    in_flight, most, answered, refused = 0, 0, [], set()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        (event,) = orjson.loads(request.content)
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.3 if event["n"] == 0 else 0.01)
            if event["n"] == 3 and 3 not in refused:
                refused.add(3)
                return httpx.Response(503, headers={"Retry-After": "0"})
            assert request.headers["Authorization"] == f"Bearer key-{event['poster']}"
            answered.append(event["n"])
            return httpx.Response(202, json={"accepted": 1})
        finally:
            in_flight -= 1

    real = httpx.AsyncClient

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return real(**kwargs, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(httpx, "AsyncClient", client)
    session = object.__new__(Session)  # post needs the options only
    session.args = argparse.Namespace(concurrency=2)
    # Window 1: requests 0 (slow) and 1; window 2: requests 2 to 5.
    todo = [(p, [{"n": n, "poster": p}]) for n, p in enumerate(["a", "b", "a", "b", "a", "b"])]
    posted = await session.post("http://bench.invalid", {"a": "key-a", "b": "key-b"}, iter(todo))
    assert (posted.accepted, posted.rejected, posted.requests, posted.retries) == (6, 0, 7, 1)
    assert len(posted.latencies_ms) == 6
    assert most == 2
    assert answered[-1] == 0  # the next window went on while the slow request of the first was in flight
    assert sorted(answered) == list(range(6))


def test_scale_rows_compare_with_one_worker_and_say_what_2_cores_show() -> None:
    data = {
        "runs": [
            _apply(3_000.0, 1, 8),
            {**_apply(2_400.0, 2, 8), "members_at_first_commit": 1},
            {"workers": 4, "partitions": 8, "error": "worker2 exited with 1: KeyError: 'X'"},
        ]
    }
    rows = scale_rows(data)
    assert [r.value for r in rows] == ["3,000 events/s", "2,400 events/s", "failed"]
    assert rows[1].limit.startswith("80% of 1 worker")
    notes = scale_notes(data, 2)
    assert "not a speed-up" in notes[0]
    assert "rebalance" in notes[1]
    assert notes[2] == "4 workers on 8 failed: worker2 exited with 1: KeyError: 'X'"


def test_rows_from_the_other_runners_json() -> None:
    ms = {"p50": 1.5, "p90": 3.0, "p99": 9.0, "max": 12.0, "mean": 2.0}
    lineage = {
        "result": {
            "graph": {"lots": 1_000_682, "edges": 996_451},
            "backward": {"http_ms": ms, "sql_ms": ms, "ratio_p50": 3.0},
            "forward": {"http_ms": ms, "sql_ms": ms, "ratio_p50": 1.8},
            "recall": {"http_ms": {**ms, "p50": 51.0}, "sql_ms": ms, "ratio_p50": 1.2, "lots": {"p50": 3698}},
        }
    }
    assert [r.met for r in lineage_rows(lineage)] == [None, True, True, False]
    alerts = {
        "latency": {
            "samples": 400,
            "get": {"p50": 0.2, "p99": 0.6},
            "sse": {"p50": 0.3, "p99": 1.2},
            "get_missing": 0,
            "sse_missing": 0,
        },
        "cost": {"events_per_s": {"on": 2000.0, "off": 3600.0}, "cost_vs_off": {"on": 0.44}},
    }
    assert [r.met for r in alerts_rows(alerts)] == [True, False, False]
    rules = {
        "asf_positive": {"precision": 1.0, "recall": 1.0},
        "mass_balance": {"precision": 0.5, "recall": 1.0},
        "time_travel": {"precision": None, "recall": 0.0},
    }
    detection = {"result": {"comparison": {"rules": rules}, "simulation": {"events": 7000}}}
    rows = detection_rows(detection)
    assert [r.value for r in rows] == ["0.50", "0.00", "1 of 3"]
    assert [r.met for r in rows] == [False, False, False]


def test_result_document_is_json_with_the_run_the_machine_the_table_and_the_raw_numbers() -> None:
    rows = [Row("ingest", "end to end", "9,000 events/s", "", ">= 10,000 events/s", False)]
    doc = result_document(
        args={"only": ["ingest"], "quick": True},
        machine={"cpus": 2, "postgres": "15.20"},
        code={"commit": "abc1234", "changed": []},
        started=datetime(2026, 11, 26, 1, 2, 3, tzinfo=UTC),
        elapsed_s=12.345,
        sections={"ingest": {"e2e": {"events_per_s": 9000.0}}},
        errors={"scale": "SectionError: worker0 exited with 1"},
        rows=rows,
        notes={"ingest": ["a note"]},
    )
    again = json.loads(json.dumps(doc))
    assert set(again) == {
        "runner",
        "started_at",
        "elapsed_s",
        "args",
        "machine",
        "code",
        "table",
        "notes",
        "errors",
        "sections",
    }
    assert again["started_at"] == "2026-11-26T01:02:03+00:00"
    assert again["table"] == [
        {
            "section": "ingest",
            "figure": "end to end",
            "value": "9,000 events/s",
            "limit": "",
            "goal": ">= 10,000 events/s",
            "met": False,
            "verdict": ">= 10,000 events/s: MISSED",
        }
    ]
    assert again["sections"]["ingest"]["e2e"]["events_per_s"] == 9000.0


def test_options() -> None:
    quick = parse_args(["--quick", "--only", "ingest, scale", "--modes", "on,off"])
    assert (quick.scale, quick.only, quick.modes) == ("small", ["ingest", "scale"], ["on", "off"])
    assert parse_args([]).scale == "city"
    with pytest.raises(SystemExit):
        parse_args(["--only", "ingest,speed"])
    with pytest.raises(SystemExit):
        parse_args(["--modes", "fast"])
    assert parse_args([]).e2e_shapes == ["reporters", "bulk"]
    assert parse_args(["--e2e-shapes", "bulk"]).e2e_shapes == ["bulk"]
    with pytest.raises(SystemExit):
        parse_args(["--e2e-shapes", "bulk,burst"])


def test_the_e2e_label_names_the_workers_when_more_than_one() -> None:
    assert e2e_label("bulk", {"batch": 1000, "workers": 2}) == "end to end (bulk, ≤1000-event requests, 2 workers)"
    assert e2e_label("reporters", {"workers": 1}) == "end to end (reporters' requests)"
    assert parse_args(["--e2e-workers", "3"]).e2e_workers == 3
