"""The pure parts of the benchmark runner ``bench/run.py``: the table, the order of the COPY limit's tables, the
rows picked from the other runners' JSON and the shape of the result document. Nothing here measures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bench.run import (
    Row,
    alerts_rows,
    copy_tables,
    detection_rows,
    fk_order,
    format_table,
    ingest_notes,
    ingest_rows,
    lineage_rows,
    parse_args,
    result_document,
    scale_notes,
    scale_rows,
)


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


def test_ingest_rows_judge_the_goals_of_issue_5() -> None:
    cpu = {f"{n}_cores": 0.3 for n in ("api", "worker", "postgres", "broker", "bench")} | {"machine_busy": 0.9}
    data = {
        "produce": {"partitions": 4, "events_per_s": 60_000.0},
        "apply": {"on": _apply(3_000.0), "off": _apply(4_000.0)},
        "copy": {"source_mode": "on", "events_per_s": 12_000.0, "rows_per_s": 90_000.0, "rows": 5, "tables": {"a": 5}},
        "e2e": {
            "events_per_s": 12_000.0,
            "post_events_per_s": 15_000.0,
            "requests": 10,
            "events_per_request": 100.0,
            "post_ms": {"p50": 20.0, "p99": 80.0},
            "retries": 0,
            "peak_rss_mb": {"api": 310.0, "worker": 120.0},
            "cpu": cpu,
            "backlog_at_last_post": 7,
            "tail_s": 0.5,
        },
    }
    verdicts = {r.figure.strip(): r.met for r in ingest_rows(data)}
    assert verdicts["worker apply, rules on"] is False  # 25 % of COPY
    assert verdicts["worker apply, rules off"] is None  # its rows were not the ones COPY'd
    assert verdicts["end to end, first POST → last event applied"] is True
    assert verdicts["peak RSS API / worker"] is False  # the API is over 300 MB
    assert next(r for r in ingest_rows(data) if "rule cost" in r.figure).value == "25%"


def test_ingest_notes_list_what_went_wrong() -> None:
    apply = {**_apply(3_000.0), "events": 990, "dead_letters": 10, "log_warnings": {"retrying": 2}}
    e2e = {
        "rejected": 5,
        "first_errors": ["HTTP 422: ..."],
        "dead_letters": 0,
        "events_applied": 995,
        "accepted": 995,
        "intake_left": 0,
        "log_warnings": {},
        "events_per_request": 9.4,
    }
    notes = ingest_notes({"apply": {"on": apply}, "e2e": e2e})
    assert notes[0] == "apply on: the worker logged retrying x2"
    assert notes[1] == "apply on: 990 events and 10 dead letters for 1,000 messages"
    assert notes[2] == "e2e: 5 events rejected, e.g. HTTP 422: ..."
    assert notes[3].startswith("e2e posts the simulator's traffic")


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
