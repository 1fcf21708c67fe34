"""The order of the shared stream is the order in which its items become visible (docs/adr/0006).

Writers draw seq numbers before they commit, and with several workers they commit in another order than
they drew. A reader that follows the stream by cursor must still get every item exactly once: no item may
be committed behind a cursor that has already passed its seq.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Actors, as_api, harvested_event, wait_for
from trace_service.access.scopes import Scopes
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing_repo
from trace_service.sharing import service as sharing
from trace_service.worker.service import Record, apply_batch

EVERYTHING = sharing.Audience(Scopes.everything())


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=6, name="test-stream-order")
    try:
        yield engine
    finally:
        await engine.dispose()


class Follower:
    """A department's loop over the feed: poll from a cursor, keep what comes, move to ``next``; it records
    any item at or behind its cursor (the order violated) and any seq seen twice."""

    def __init__(self, engine: AsyncEngine, start: int) -> None:
        self.engine = engine
        self.cursor = start
        self.items: list[dict[str, Any]] = []
        self.behind: list[int] = []
        self.polls = 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            async with self.engine.connect() as conn:
                page, nxt = await sharing.page(conn, EVERYTHING, self.cursor, 1000)
            self.behind += [i["seq"] for i in page if i["seq"] <= self.cursor]
            self.items += page
            self.cursor = max(self.cursor, nxt)
            self.polls += 1
            if stopping and not page:
                return
            await asyncio.sleep(0.002)

    async def finish(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 20)

    def event_ids(self) -> list[str]:
        return [i["item"]["event_id"] for i in self.items if i["kind"] == "event"]


async def _store_events(db: asyncpg.Connection, count: int) -> list[uuid.UUID]:
    """Events as a worker stores them, committed: the items two transactions below will share."""
    ids = [uuid.uuid4() for _ in range(count)]
    await db.executemany(
        """INSERT INTO events (event_id, event_type, occurred_at, operator, envelope, sha256, source,
                               kafka_partition, kafka_offset)
           VALUES ($1, 'lot.tested', now(), 'ORDEROP01', $2::jsonb, '\\x00'::bytea, 'api', 0, 0)""",
        [(i, orjson.dumps({"event_id": str(i), "event_type": "lot.tested"}).decode()) for i in ids],
    )
    return ids


async def _waiting_on_the_stream_lock(db: asyncpg.Connection) -> bool:
    key = sharing_repo.STREAM_LOCK
    waiting = await db.fetchval(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
           AND ((classid::bigint << 32) | objid::bigint) = $1""",
        key,
    )
    return bool(waiting)


async def test_a_writer_that_drew_later_but_commits_first_never_hides_an_earlier_seq(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    """Worker A shares its batch and stays open; worker B shares a batch and an alert version after A drew its
    numbers; a follower polls all along. B must become visible only after A, so the follower gets A's items
    and B's, each once, in seq order. (Without the stream's lock B commits first with larger numbers, the
    follower's cursor passes A's, and A's items are never read: this test fails.)"""
    batch_a, batch_b = await _store_events(db, 5), await _store_events(db, 5)
    async with engine.connect() as conn:
        start = await sharing.head(conn)
    follower = Follower(engine, start)
    a_shared, release_a = asyncio.Event(), asyncio.Event()

    async def worker_a() -> None:
        async with engine.begin() as conn:
            await sharing_repo.append(conn, event_ids=batch_a)
            a_shared.set()
            await release_a.wait()  # a slow end of its transaction: other statements, a long commit

    async def worker_b() -> None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO alert_outbox (alert_id, version, payload) VALUES ($1, 1, $2::jsonb)",
                ("al_order", orjson.dumps({"id": "al_order", "rule": "test_order", "operator": None}).decode()),
            )
            await sharing_repo.append(conn, event_ids=batch_b)

    task_a = asyncio.create_task(worker_a())
    await asyncio.wait_for(a_shared.wait(), 10)
    task_b = asyncio.create_task(worker_b())
    await wait_for(lambda: _true(task_b.done()) if task_b.done() else _waiting_on_the_stream_lock(db))
    polls = follower.polls
    await wait_for(lambda: _true(follower.polls >= polls + 3))  # the follower reads while A is still open
    release_a.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), 10)
    await follower.finish()

    assert follower.behind == []
    seqs = [i["seq"] for i in follower.items]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert follower.event_ids() == [str(i) for i in batch_a + batch_b]
    # B's alert version, shared at its commit by the outbox trigger, comes after everything B appended.
    kinds = [i["kind"] for i in follower.items]
    assert kinds == ["event"] * 10 + ["alert"]
    assert follower.items[-1]["item"]["id"] == "al_order"


async def _true(value: bool) -> bool:
    return value


async def test_two_workers_applying_batches_at_once_are_followed_exactly_once(
    engine: AsyncEngine, db: asyncpg.Connection, actors: Actors, settings: Settings
) -> None:
    """Two real worker batches at a time, round after round, while a follower polls."""
    ops = [await actors.operator() for _ in range(2)]
    catalogue = build_catalogue(settings.codes)
    async with engine.connect() as conn:
        start = await sharing.head(conn)
    follower = Follower(engine, start)
    expected: set[str] = set()

    async def worker(n: int, rounds: int) -> None:
        for r in range(rounds):
            events = [harvested_event(ops[n]) for _ in range(40)]
            expected.update(e["event_id"] for e in events)
            records = [
                Record(settings.topic_events, n, r * 1000 + i, k, v, tuple(h))
                for i, (k, v, h) in enumerate(as_api(settings, events, actor=ops[n]))
            ]
            outcome = await apply_batch(engine, catalogue, records, future_skew_seconds=300, settings=settings)
            assert len(outcome.applied) == len(events), outcome.dead

    await asyncio.gather(worker(0, 8), worker(1, 8))
    await follower.finish()
    assert follower.behind == []
    seqs = [i["seq"] for i in follower.items]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    ids = follower.event_ids()
    assert len(ids) == len(set(ids))
    assert expected <= set(ids)
    stored = {str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM events WHERE operator = ANY($1)", ops)}
    assert stored == expected
