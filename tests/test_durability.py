"""Whatever process dies, no event answered 202 is lost, and none is applied twice (issue 10, point 5).

Each test posts a stream of ``produce.harvested`` events, each creating a fresh lot of a known weight,
and kills a process in the middle of it. A batch that is not answered 202 is posted again with the same
ids, as a client would. At the end every event answered 202 must be in ``events`` (exactly once: the id
is its primary key) and every lot created must hold exactly the kg sent: an event applied twice would
count its weight twice.

Processes are found through ``/proc`` (parent pid and command line) and killed by pid, never by name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tests.conftest import ADMIN_TOKEN, api_client, make_settings, running_worker
from tests.support import Actors, code, harvested_event, wait_for
from trace_service.db.engine import migrate
from trace_service.ingest import repository as ledger
from trace_service.runtime import procs
from trace_service.runtime.embedded import EmbeddedBroker, EmbeddedPostgres, find_free_port

# Ledger rows wait this long before the redeliverer produces them again (30 s by default): keeps the
# tests short, and makes redelivered copies of events that were not lost likely, which must be harmless.
REDELIVER_AFTER = "3"
# Events between two kills: enough that the kill lands in the middle of a stream.
STRIDE = 300


# -- the stream of events ----------------------------------------------------------------------------------


@dataclass
class Stream:
    """Posts batches of fresh produce lots until stopped; a batch not answered 202 is posted again."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    operator: str
    batch: int = 40
    sent: dict[str, tuple[str, Decimal]] = field(default_factory=dict)  # event id -> (lot, kg)
    accepted: set[str] = field(default_factory=set)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    notes: list[str] = field(default_factory=list)  # what happened when, for the failure messages

    def note(self, what: str) -> None:
        self.notes.append(f"{what}: {len(self.accepted)} accepted so far, refusals {dict(self.refusals)}")

    def _event(self) -> dict[str, object]:
        kg = Decimal(random.randint(1000, 999_999)) / 1000
        event = harvested_event(self.operator)
        event["data"] = {**event["data"], "lot": code("DUR", 20), "weight_kg": float(kg)}  # type: ignore[dict-item]
        self.sent[str(event["event_id"])] = (event["data"]["lot"], kg)  # type: ignore[index]
        return event

    async def run(self) -> None:
        while not self.stopping.is_set():
            await self._post_until_accepted([self._event() for _ in range(self.batch)])

    async def _post_until_accepted(self, events: list[dict[str, object]]) -> None:
        body = orjson.dumps(events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        while loop.time() < deadline:
            try:
                r = await self.client.post(
                    "/v1/events", content=body, headers={**self.headers, "content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                self.refusals[type(exc).__name__] += 1
            else:
                if r.status_code == 202:
                    self.accepted.update(str(e["event_id"]) for e in events)
                    return
                assert r.status_code >= 500, r.text  # a 4xx would be a bug in the stream, not an outage
                self.refusals[str(r.status_code)] += 1
            await asyncio.sleep(0.2)
        raise AssertionError(f"a batch was not accepted within 180 s; refusals so far: {dict(self.refusals)}")

    async def progressed(self, by: int, timeout: float = 90.0) -> None:
        """Wait until ``by`` more events were accepted than now."""
        target = len(self.accepted) + by
        await wait_for(lambda: _true(len(self.accepted) >= target), timeout=timeout, interval=0.1)


async def _true(value: bool) -> bool:
    return value


async def _status(url: str, expected: int) -> bool:
    with contextlib.suppress(httpx.TransportError):
        async with httpx.AsyncClient(timeout=3) as c:
            return (await c.get(url)).status_code == expected
    return False


@contextlib.asynccontextmanager
async def streaming(stream: Stream) -> AsyncIterator[Stream]:
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        stream.stopping.set()
        await asyncio.wait_for(task, timeout=200)  # the batch in hand is posted until accepted


async def assert_all_applied_once(conn: asyncpg.Connection, stream: Stream, timeout: float = 150.0) -> None:
    accepted = [uuid.UUID(i) for i in stream.accepted]

    async def missing() -> int:
        found = await conn.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", accepted)
        return len(accepted) - int(found)

    async def none_missing() -> bool:
        return await missing() == 0

    try:
        await wait_for(none_missing, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(
            f"{await missing()} of {len(accepted)} events answered 202 were never applied; "
            f"refusals: {dict(stream.refusals)}; {stream.notes}"
        ) from None
    # Every lot created holds the kg sent, once (batches refused and posted again included).
    lots = dict(stream.sent.values())
    rows = await conn.fetch("SELECT code, kg_in FROM lots WHERE code = ANY($1::text[])", list(lots))
    wrong = {r["code"]: (r["kg_in"], lots[r["code"]]) for r in rows if r["kg_in"] != lots[r["code"]]}
    assert not wrong, f"lots whose kg differs from what was sent (applied twice?): {list(wrong.items())[:5]}"
    assert len(rows) >= len(accepted), "an accepted event's lot is missing"
    dupes = await conn.fetchval(
        "SELECT count(*) - count(DISTINCT event_id) FROM events WHERE event_id = ANY($1::uuid[])", accepted
    )
    assert dupes == 0


# -- processes -----------------------------------------------------------------------------------------------


def _postmaster(pgdata: Path) -> tuple[int, Path]:
    """The postmaster's pid and socket directory, from its postmaster.pid."""
    found = procs.postmaster(pgdata)
    assert found is not None, f"no postmaster.pid in {pgdata}"
    return found


def _dev_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env.update(
        {
            "TRACE_REDELIVER_AFTER_SECONDS": REDELIVER_AFTER,
            # A killed worker's partitions move to its successor after this, not after 10 s.
            "TRACE_WORKER_SESSION_TIMEOUT_MS": "2000",
            "TRACE_WORKER_HEARTBEAT_INTERVAL_MS": "500",
            "TRACE_LOG_LEVEL": "warning",
        }
    )
    env.update(extra)
    return env


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _start_dev(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)]
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=_dev_env(), stdout=out, stderr=subprocess.STDOUT)


async def _ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, _tail(log)
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(base_url=base, timeout=3) as c:
                return (await c.get("/readyz")).status_code == 200
        return False

    await wait_for(ready, timeout=timeout, interval=0.3)


@pytest.fixture
def dev_folder() -> Iterator[Path]:
    # pgserver runs PostgreSQL as its own system user, which must reach the folder: not pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="trace-durability-"))
    yield root
    pgdata = root / "data" / "postgres"
    if (pgdata / "postmaster.pid").exists():
        with contextlib.suppress(Exception):
            pid, _ = _postmaster(pgdata)
            if procs.alive(pid):
                os.kill(pid, signal.SIGINT)  # a test that failed left its server running: fast shutdown
    shutil.rmtree(root, ignore_errors=True)


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.fixture
async def ledger_engine(database_url: str, db: asyncpg.Connection) -> AsyncIterator[AsyncEngine]:
    """An engine whose ``intake``, ``events``, ``dead_letters`` and ``parked_events`` are empty copies in a schema
    of its own: other tests leave ledger rows behind that a claim would take."""
    schema = f"ledger_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE SCHEMA {schema}")
    for table in ("intake", "events", "dead_letters", "parked_events"):
        await db.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
    engine = create_async_engine(database_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        yield engine
    finally:
        await engine.dispose()
        await db.execute(f"DROP SCHEMA {schema} CASCADE")


HEADERS = (("trace-source", b"api"), ("trace-signature", b"\x00\xff binary"))


async def _ledger_rows(engine: AsyncEngine, n: int, *, age_seconds: float) -> list[uuid.UUID]:
    ids = sorted(uuid.uuid4() for _ in range(n))
    async with engine.begin() as conn:
        entries = [ledger.LedgerEntry(i, "OP000001", b"h", b"OP000001", i.bytes, HEADERS) for i in ids]
        await ledger.record_intake(conn, "trace.events.v1", entries)
        await conn.execute(
            sa.text("UPDATE intake SET produced_at = now() - make_interval(secs => :age)"), {"age": age_seconds}
        )
    return ids


async def _claim(conn: AsyncConnection, limit: int = 1000) -> set[uuid.UUID]:
    return {r.event_id for r in await ledger.claim_due(conn, after_seconds=30, cap_seconds=600, limit=limit)}


async def test_two_redeliverers_never_claim_the_same_rows_and_each_row_backs_off(ledger_engine: AsyncEngine) -> None:
    ids = await _ledger_rows(ledger_engine, 100, age_seconds=45)
    async with ledger_engine.connect() as a, ledger_engine.connect() as b:
        await a.begin()
        first = await _claim(a, limit=60)
        await b.begin()
        second = await _claim(b, limit=100)  # while the first worker's claim is not committed yet
        await a.commit()
        await b.commit()
    assert len(first) == 60
    assert second == set(ids) - first
    async with ledger_engine.begin() as conn:
        assert await _claim(conn) == set()  # produced just now
        # The second attempt waits twice as long: 60 s after the last production.
        await conn.execute(sa.text("UPDATE intake SET produced_at = now() - interval '50 seconds'"))
        assert await _claim(conn) == set()
        await conn.execute(sa.text("UPDATE intake SET produced_at = now() - interval '70 seconds'"))
        assert await _claim(conn) == set(ids)
        attempts = (await conn.execute(sa.text("SELECT DISTINCT attempts FROM intake"))).scalars().all()
        assert attempts == [3]
        # However many attempts, a row waits at most the cap (10 minutes).
        await conn.execute(sa.text("UPDATE intake SET attempts = 50, produced_at = now() - interval '601 seconds'"))
        rows = await ledger.claim_due(conn, after_seconds=30, cap_seconds=600, limit=1000)
    assert {r.event_id for r in rows} == set(ids)
    # The message comes back byte for byte, headers in order.
    assert {(r.topic, r.key, r.value) for r in rows} == {("trace.events.v1", b"OP000001", i.bytes) for i in ids}
    assert {tuple(r.headers) for r in rows} == {HEADERS}


async def test_applied_parked_and_rejected_events_are_not_produced_again(ledger_engine: AsyncEngine) -> None:
    applied, parked, rejected, waiting = await _ledger_rows(ledger_engine, 4, age_seconds=45)
    async with ledger_engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO events (event_id, event_type, occurred_at, operator, envelope, sha256, source, "
                "kafka_partition, kafka_offset) VALUES (:id, 'lot.tested', now(), 'OP000001', '{}', 'h', 'api', 0, 0)"
            ),
            {"id": applied},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO parked_events (topic, kafka_partition, kafka_offset, event_id, operator, raw, waits_for) "
                "VALUES ('t', 0, 1, :id, 'OP000001', 'x', '{LOT1}')"
            ),
            {"id": parked},
        )
        dead = (
            "INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, raw, error_code, error_message, event_id) "
            "VALUES ('t', 0, :offset, :raw, 'not_holder', 'no', :id)"
        )
        await conn.execute(sa.text(dead), {"offset": 2, "raw": rejected.bytes, "id": rejected})
        # A conflicting copy from another producer was rejected: the API's own message still counts.
        await conn.execute(sa.text(dead), {"offset": 3, "raw": b"another copy", "id": waiting})
        assert await ledger.retire_rejected(conn, after_seconds=30) == 1
        assert await _claim(conn) == {waiting}
        kept = (await conn.execute(sa.text("SELECT event_id FROM intake WHERE value IS NULL"))).scalars().all()
        assert kept == [rejected]  # its fingerprint stays for the conflict check, its message is dropped


@pytest.mark.slow
async def test_events_a_restarted_broker_forgot_are_produced_again(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The ledger holds each accepted event's message: a new, empty broker gets it again from there."""
    broker = EmbeddedBroker.start(log_file=tmp_path / "broker-1.log")
    settings = make_settings(database_url, broker.bootstrap, produce_timeout_seconds=2.0, redeliver_after_seconds=1.0)
    try:
        async with api_client(settings) as client:
            op, key = await Actors(client, ADMIN_TOKEN).operator_with_key()
            batch = [harvested_event(op) for _ in range(50)]
            ids = [uuid.UUID(e["event_id"]) for e in batch]
            assert (await client.post("/v1/events", json=batch, headers=key)).status_code == 202
            # No worker ran: the events were only in the broker's memory, and in the ledger.
            broker.kill()
            r = await client.get(f"/v1/events/{ids[0]}", headers=key)
            assert r.json()["status"] == "accepted"
            # Posting the same ids again while the broker is down: 503, and the ledger keeps the rows of the
            # first attempt (only rows a failed request added itself are taken back).
            r = await client.post("/v1/events", json=batch, headers=key)
            assert r.status_code == 503, r.text
            assert "retry-after" in r.headers
            ledger = "SELECT count(*) FROM intake WHERE event_id = ANY($1::uuid[]) AND value IS NOT NULL"
            assert await db.fetchval(ledger, ids) == 50

            broker = EmbeddedBroker.start(port=broker.port, log_file=tmp_path / "broker-2.log")  # a new cluster
            async with running_worker(settings):

                async def applied() -> bool:
                    found = await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids)
                    return int(found) == len(ids)

                await wait_for(applied, timeout=60, interval=0.2)
            assert await db.fetchval("SELECT count(*) FROM intake WHERE event_id = ANY($1::uuid[])", ids) == 0
            r = await client.get(f"/v1/events/{ids[0]}", headers=key)
            assert r.json()["status"] == "applied"
            kg = await db.fetch(
                "SELECT kg_in FROM lots WHERE code = ANY($1::text[])", [e["data"]["lot"] for e in batch]
            )
            assert [r["kg_in"] for r in kg] == [Decimal("1250.500")] * 50
    finally:
        broker.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_dev_loses_nothing_whatever_process_is_killed(dev_folder: Path) -> None:
    """Under `trace-service dev`: SIGKILL the worker, the API, the broker, Postgres, then dev itself."""
    data_dir = dev_folder / "data"
    log = dev_folder / "dev.log"
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    dev = _start_dev(data_dir, port, log)
    conn: asyncpg.Connection | None = None
    try:
        await _ready(base, dev, log)
        # A second dev on the same folder refuses to start, and leaves the first alone.
        second = subprocess.run(
            [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(find_free_port()),
             "--data-dir", str(data_dir)],
            env=_dev_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1, second.stderr
        assert f"{data_dir} is in use by another `trace-service dev` (pid {dev.pid}," in second.stderr
        assert dev.poll() is None

        token = _tail(data_dir / "admin-token").strip()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            op, key = await Actors(client, token).operator_with_key()
            async with streaming(Stream(client, key, op)) as stream:
                await stream.progressed(STRIDE)
                for role in ("worker", "api", "broker"):
                    pid = procs.child(dev.pid, role)
                    assert pid is not None, f"no {role} under dev"
                    os.kill(pid, signal.SIGKILL)

                    async def replaced(role: str = role, old: int = pid) -> bool:
                        new = procs.child(dev.pid, role)
                        return new is not None and new != old

                    await wait_for(replaced, timeout=60, interval=0.2)
                    await stream.progressed(STRIDE)
                    stream.note(f"killed the {role}")

                pgdata = data_dir / "postgres"
                postmaster, _ = _postmaster(pgdata)
                os.kill(postmaster, signal.SIGKILL)

                async def postgres_back() -> bool:
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        pid, _ = _postmaster(pgdata)
                        return pid != postmaster and procs.alive(pid)
                    return False

                await wait_for(postgres_back, timeout=60, interval=0.2)
                await stream.progressed(STRIDE)
                stream.note("killed Postgres")

                # dev itself: its children stop on their parent-death signal, Postgres keeps running, and the
                # next dev on the folder adopts it and produces again what the old broker forgot.
                children = [p for p in (procs.child(dev.pid, r) for r in procs.DEV_CHILDREN) if p is not None]
                assert len(children) == 3
                dev.kill()
                dev.wait()
                await wait_for(lambda: _true(not any(procs.alive(p) for p in children)), timeout=60, interval=0.2)
                dev = _start_dev(data_dir, port, log)
                await _ready(base, dev, log)
                await stream.progressed(STRIDE)
                stream.note("killed dev, started a new one")

            _, socket_dir = _postmaster(data_dir / "postgres")
            conn = await asyncpg.connect(host=str(socket_dir), user="postgres", database="trace")
            await assert_all_applied_once(conn, stream)
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=90) == 0, _tail(log)
    finally:
        if conn is not None:
            conn.terminate()  # its server may be gone already
        if dev.poll() is None:
            dev.kill()
            dev.wait()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_production_shape_waits_out_a_postgres_restart(broker_bootstrap: str) -> None:
    """`trace-service api` and `trace-service worker` processes: Postgres stops in the middle of a stream and
    comes back; the API answers 503 meanwhile, the worker keeps retrying, and every accepted event is
    applied once."""
    root = Path(tempfile.mkdtemp(prefix="trace-durability-pg-"))
    pg = EmbeddedPostgres.start(root / "postgres")
    procs: list[subprocess.Popen[bytes]] = []
    conn: asyncpg.Connection | None = None
    try:
        await asyncio.to_thread(migrate, pg.url)
        settings = make_settings(pg.url, broker_bootstrap)
        port = find_free_port()
        env = _dev_env(
            TRACE_DATABASE_URL=pg.url,
            TRACE_KAFKA_BOOTSTRAP=broker_bootstrap,
            TRACE_TOPIC_EVENTS=settings.topic_events,
            TRACE_TOPIC_DLQ=settings.topic_dlq,
            TRACE_TOPIC_ALERTS=settings.topic_alerts,
            TRACE_CONSUMER_GROUP=settings.consumer_group,
            TRACE_ADMIN_TOKEN=ADMIN_TOKEN,
            TRACE_KEY_PEPPER=settings.key_pepper.get_secret_value(),
        )
        health_port = find_free_port()
        env["TRACE_WORKER_HEALTH_PORT"] = str(health_port)
        worker_health = f"http://127.0.0.1:{health_port}/readyz"
        command = [sys.executable, "-m", "trace_service.cli"]
        with (root / "services.log").open("ab") as out:
            for argv in (["api", "--port", str(port)], ["worker"]):
                procs.append(subprocess.Popen([*command, *argv], env=env, stdout=out, stderr=subprocess.STDOUT))
        api, worker = procs
        base = f"http://127.0.0.1:{port}"
        await _ready(base, api, root / "services.log")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            op, key = await Actors(client, ADMIN_TOKEN).operator_with_key()
            async with streaming(Stream(client, key, op)) as stream:
                await stream.progressed(STRIDE)
                await asyncio.to_thread(pg.stop)
                # The worker notices (not ready), and the outage lasts well past what a bounded retry would
                # wait: some 50 refused posts, ten seconds or more.
                await wait_for(lambda: _status(worker_health, 503), timeout=60, interval=0.2)
                refused = sum(stream.refusals.values())
                await wait_for(lambda: _true(sum(stream.refusals.values()) >= refused + 50), timeout=90)
                stream.note("Postgres stopped")
                pg = await asyncio.to_thread(EmbeddedPostgres.start, root / "postgres")
                await wait_for(lambda: _status(worker_health, 200), timeout=60, interval=0.2)
                await stream.progressed(STRIDE)
                stream.note("Postgres started again")
            conn = await asyncpg.connect(host=str(pg.socket_dir), user="postgres", database=pg.database)
            await assert_all_applied_once(conn, stream)
        assert worker.poll() is None, "the worker exited during the outage"
        assert api.poll() is None
    finally:
        if conn is not None:
            conn.terminate()  # its server may be gone already
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
