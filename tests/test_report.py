"""``trace-service report`` over a simulated day: per-node files and a manifest that match the day's events,
a second run that changes nothing, and a push that fails half-way and is resumed by the next run."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support import register_operators, wait_for
from trace_service.reporting import format as fmt
from trace_service.settings import Settings
from trace_service.sim.city import build_city
from trace_service.sim.events import simulate

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = date(2025, 7, 9)  # a day no other test simulates


@dataclass
class Province:
    """The provincial platform's receiving end: records every push; refuses with 500 after ``accept`` files."""

    accept: int | None = None
    pushes: list[tuple[str, dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def serve(self) -> ThreadingHTTPServer:
        province = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with province.lock:
                    taken = len(province.accepted())
                    status = 500 if province.accept is not None and taken >= province.accept else 201
                    province.pushes.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}/upload"
        return server

    def accepted(self) -> list[tuple[str, dict[str, str], bytes, int]]:
        return [p for p in self.pushes if p[3] < 300]


@pytest.fixture
def province() -> Iterator[Province]:
    p = Province()
    server = p.serve()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield p
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def report(database_url: str, out: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env |= {"TRACE_DATABASE_URL": database_url, "TRACE_REPORT_URL": url, "TRACE_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "trace_service.cli", "report", "--date", DAY.isoformat(), "--out", str(out),
               "--push-attempts", "1"]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def without_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [without_nulls(v) for v in node]
    return node


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


async def test_report_of_a_simulated_day_matches_it_reruns_identically_and_resumes_a_push(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection, settings: Settings, province: Province,
    tmp_path: Path,
) -> None:  # fmt: skip
    sim = simulate(build_city(2727, "tiny"), days=1, end=DAY, anomalies=0.0)
    await register_operators(client, ADMIN, [op.registration() for op in sim.city.operators])
    for i in range(0, len(sim.events), 500):
        r = await client.post("/v1/events", json=sim.events[i : i + 500], headers=ADMIN)
        assert r.status_code == 202, r.text
    ids = [uuid.UUID(e["event_id"]) for e in sim.events]

    async def applied() -> bool:
        found = await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids)
        return bool(found == len(ids))

    await wait_for(applied, timeout=60, interval=0.2)

    # First run: the receiver takes two files, then fails.
    province.accept = 2
    first = report(settings.database_url, tmp_path, province.url)
    assert first.returncode == 1, first.stderr
    assert "run the same command again" in first.stderr
    folder = tmp_path / DAY.isoformat()
    manifest = orjson.loads((folder / fmt.MANIFEST).read_bytes())

    # The files are the day's events in the city's time zone, per reporting operator, in a stable order.
    rows = await db.fetch(
        """SELECT operator, event_id::text AS event_id FROM events
           WHERE (occurred_at AT TIME ZONE 'Asia/Shanghai')::date = $1 ORDER BY operator, occurred_at, event_id""",
        DAY,
    )
    expected: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        expected[r["operator"]].append(r["event_id"])
    assert {f["operator"]: f["records"] for f in manifest["files"]} == {k: len(v) for k, v in expected.items()}
    assert manifest["totals"]["records"] == len(rows)
    assert manifest["totals"]["files"] == len(expected)
    assert (manifest["date"], manifest["timezone"]) == (DAY.isoformat(), "Asia/Shanghai")
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        lines = [orjson.loads(line) for line in data.splitlines()]
        assert [line["event_id"] for line in lines] == expected[entry["operator"]]
        assert {line["operator"] for line in lines} == {entry["operator"]}
    sim_day = {e["event_id"]: e for e in sim.events if e["occurred_at"][:10] == DAY.isoformat()}
    written = {
        line["event_id"]: line
        for entry in manifest["files"]
        for line in map(orjson.loads, (folder / entry["name"]).read_bytes().splitlines())
    }
    assert set(sim_day) <= set(written)
    # As reported (the stored form spells out the optional fields the producer left out, as nulls).
    differ = [i for i, e in sim_day.items() if without_nulls(written[i]["data"]) != without_nulls(e["data"])]
    assert differ == []
    assert sorted(p.name for p in folder.iterdir()) == sorted([fmt.MANIFEST, *(f["name"] for f in manifest["files"])])
    assert len(province.accepted()) == 2
    assert all(not p[0].endswith(fmt.MANIFEST) for p in province.pushes)  # no manifest before every file

    # Second run: the receiver is well again. The push resumes at the file that failed and completes.
    before = snapshot(folder)
    province.accept = None
    second = report(settings.database_url, tmp_path, province.url)
    assert second.returncode == 0, second.stderr
    assert snapshot(folder) == before  # the same bytes, not even rewritten
    names = [p[0].rsplit("/", 1)[-1] for p in province.accepted()]
    assert sorted(names) == sorted([f["name"] for f in manifest["files"]] + [fmt.MANIFEST])  # each once
    assert names[-1] == fmt.MANIFEST
    for path, headers, body, _ in province.accepted():
        name = path.rsplit("/", 1)[-1]
        assert path == f"/upload/{DAY.isoformat()}/{name}"
        digest = hashlib.sha256(body)
        assert headers["idempotency-key"] == f"{DAY.isoformat()}/{name}/{digest.hexdigest()}"
        assert headers["content-digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
        assert headers["content-type"] == ("application/json" if name == fmt.MANIFEST else fmt.NDJSON)
        assert body == (folder / name).read_bytes()

    # Third run: nothing new, nothing pushed, nothing rewritten.
    pushes = len(province.pushes)
    third = report(settings.database_url, tmp_path, province.url)
    assert third.returncode == 0, third.stderr
    assert len(province.pushes) == pushes
    assert "nothing to push" in third.stderr
    assert snapshot(folder) == before
