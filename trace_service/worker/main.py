"""The worker process: a consumer group on the events topic.

Loop: ``getmany`` → apply the batch in one transaction → publish its dead letters → commit the
offsets. Offsets are committed only after the database commit, so a crash re-reads the batch and the
unique ``event_id`` makes the replay a no-op. SIGTERM lets the batch in hand finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.alerts import engine as alert_engine
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.relay import relay_outbox
from trace_service.chain.writes import OwnershipRace
from trace_service.contract.events import Catalogue, build_catalogue
from trace_service.db.engine import create_engine
from trace_service.db.uow import unit_of_work
from trace_service.kafka import ensure_topics, producer_options
from trace_service.market import service as market
from trace_service.settings import Settings
from trace_service.worker import authn, redeliver
from trace_service.worker import repository as worker_repo
from trace_service.worker.decode import Dead, Decoded, Position, unapplicable
from trace_service.worker.repository import headers_from_json
from trace_service.worker.service import BatchOutcome, Record, apply_batch, parked_records, plan

log = structlog.get_logger(__name__)

T = TypeVar("T")

# SQLSTATEs worth another try: serialization failure, deadlock, connection trouble, admin shutdown.
_TRANSIENT_SQLSTATES = {
    "40001",
    "40P01",
    "57P01",
    "57P02",
    "57P03",
    "08000",
    "08003",
    "08006",
    "08001",
    "08004",
}


def _transient(exc: BaseException) -> bool:
    """A failure that another try may cure: the database or the broker is away, a lock conflict."""
    if isinstance(exc, KafkaError | OwnershipRace):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
        if sqlstate is not None:
            return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
        # No SQLSTATE: the driver lost the connection (asyncpg's ConnectionDoesNotExistError and kin).
        return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    return isinstance(exc, OSError | TimeoutError | asyncpg.exceptions.InterfaceError | asyncpg.PostgresConnectionError)


def _lock_conflict(exc: BaseException) -> bool:
    if isinstance(exc, OwnershipRace):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return sqlstate in ("40001", "40P01")


async def _retry(
    what: str,
    fn: Callable[[], Awaitable[T]],
    is_transient: Callable[[BaseException], bool] = _transient,
    *,
    attempts: int | None = None,
    on_failure: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> T:
    """Run ``fn`` until it succeeds, retrying transient failures with capped exponential backoff.

    ``attempts=None`` retries for as long as the failure lasts (a database restart, a broker outage):
    the worker waits, reporting not-ready, and never exits on an outage. Anything else is raised.
    """
    delay = 0.1
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc) or (attempts is not None and attempt >= attempts):
                raise
            if on_failure is not None and not _lock_conflict(exc):
                on_failure()  # an outage; a deadlock or serialization failure between workers is not one
            attempt += 1
            log.warning("retrying", what=what, attempt=attempt, error=type(exc).__name__, detail=str(exc)[:200])
            if stop is not None and stop.is_set() and attempt > 3:
                raise
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


MAX_BACKOFF_SECONDS = 10.0


def _reason(exc: BaseException) -> str:
    """The database's (or the code's) reason for refusing a message, for its dead letter: one clean line."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc) or type(exc).__name__
    text = text.replace("\x00", "").splitlines()[0] if text.strip() else type(exc).__name__
    return text[:500]


# How often a worker deletes intake rows whose events it already applied (see clear_applied_intake).
INTAKE_SWEEP_SECONDS = 30.0
# How often a worker looks for parked events freed by another worker's commit, or expired.
PARKED_SWEEP_SECONDS = 5.0
PARKED_RACE_WINDOW_SECONDS = 600.0
PARKED_FULL_SWEEP_SECONDS = 600.0


# Records decoded between two yields to the event loop while the next batch is decoded ahead (about 10 ms).
DECODE_SLICE = 250


@dataclass(frozen=True)
class Planned:
    """A consumed batch as records, and what ``plan`` made of them before its transaction."""

    records: list[Record]
    decoded: list[Decoded]
    dead: list[Dead]


def _records(batch: dict[Any, list[Any]]) -> list[Record]:
    return [
        Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
        for msgs in batch.values()
        for r in msgs
    ]


class Worker:
    def __init__(self, settings: Settings, engine: AsyncEngine, catalogue: Catalogue) -> None:
        self.settings = settings
        self.engine = engine
        self.catalogue = catalogue
        self._mark = authn.ApiMark(settings)
        self.batches = 0
        self.applied = 0
        self.dead = 0
        # False while Postgres or the broker is away (the worker waits; see the health port).
        self.ready = False
        self._consumer_obj: AIOKafkaConsumer | None = None
        self._next_intake_sweep = 0.0
        self._next_parked_sweep = 0.0
        self._next_full_parked_sweep = 0.0

    def assignment(self) -> set[TopicPartition]:
        """The partitions this worker holds right now (empty before it joined the group)."""
        return set(self._consumer_obj.assignment()) if self._consumer_obj is not None else set()

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            s.topic_events,
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.worker_max_records,
            fetch_max_wait_ms=s.worker_fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            session_timeout_ms=s.worker_session_timeout_ms,
            heartbeat_interval_ms=s.worker_heartbeat_interval_ms,
            request_timeout_ms=max(40_000, s.worker_session_timeout_ms * 2),
        )

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        # The broker may not be up yet (a supervisor restarts both): wait for it rather than exit.
        await _retry("ensure_topics", lambda: ensure_topics(s), on_failure=self._not_ready, stop=stop)
        consumer = self._consumer_obj = self._consumer()
        producer = AIOKafkaProducer(**producer_options(s))
        await _retry("consumer_start", consumer.start, on_failure=self._not_ready, stop=stop)
        try:
            await _retry("producer_start", producer.start, on_failure=self._not_ready, stop=stop)
            self.ready = True
            if ready is not None:
                ready.set()
            log.info("worker_started", topic=s.topic_events, group=s.consumer_group)
            loop = asyncio.get_running_loop()
            next_tick = loop.time()
            # The next batch is fetched and decoded while the current one's transaction runs: decoding needs no
            # database, and one worker is otherwise a serial pipeline, Python then Postgres. A batch fetched
            # ahead and not applied when the worker stops is not committed: the group reads it again.
            ahead = asyncio.create_task(self._fetch(consumer))
            try:
                while not stop.is_set():
                    batch, planned = await ahead
                    ahead = asyncio.create_task(self._fetch(consumer))
                    if batch:
                        outcome = await self._handle(consumer, producer, batch, planned)
                        if outcome.alerts_changed:
                            await self._relay(producer)
                    if loop.time() >= next_tick:
                        next_tick = loop.time() + s.rules.tick_seconds
                        await self._tick(producer)
            finally:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ahead
        finally:
            self.ready = False
            await consumer.stop()
            await producer.stop()
            log.info("worker_stopped", batches=self.batches, applied=self.applied, dead=self.dead)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> tuple[dict[Any, list[Any]], Planned]:
        """The next ``getmany`` batch, decoded in slices that let the current batch's statements proceed."""
        s = self.settings
        batch: dict[Any, list[Any]] = await _retry(
            "fetch",
            lambda: consumer.getmany(timeout_ms=s.worker_poll_timeout_ms, max_records=s.worker_max_records),
            on_failure=self._not_ready,
        )
        records = _records(batch)
        decoded: list[Decoded] = []
        dead: list[Dead] = []
        for start in range(0, len(records), DECODE_SLICE):
            good, bad = plan(
                self.catalogue,
                records[start : start + DECODE_SLICE],
                future_skew_seconds=s.future_skew_seconds,
                mark=self._mark,
            )
            decoded += good
            dead += bad
            await asyncio.sleep(0)  # a statement of the current batch that has its answer goes first
        return batch, Planned(records, decoded, dead)

    def _not_ready(self) -> None:
        if self.ready:
            log.warning("worker_not_ready")
        self.ready = False

    async def _periodic(self, what: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """One periodic job: transient failures wait for the next tick, a failing job never stops the worker."""
        try:
            await fn()
        except Exception as exc:
            if _transient(exc):
                self._not_ready()
                log.warning("periodic_job_postponed", what=what, error=type(exc).__name__, detail=str(exc)[:200])
            else:
                log.error("periodic_job_failed", what=what, exc_info=exc)

    async def _tick(self, producer: AIOKafkaProducer) -> None:
        """Due absence checks, the upstream_missing sweeper, and any outbox rows left behind."""

        async def judge() -> None:
            async with unit_of_work(self.engine) as conn:
                changed = await alert_engine.tick(conn, self.settings.rules) if self.settings.rules.enabled else []
                # Market rules that judge on the clock: settled hours, finished days, silent markets.
                changed += await alerts_repo.write_findings(conn, await market.sweep(conn, self.settings))

        await self._periodic("alert_tick", judge)
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_parked_sweep:
            self._next_parked_sweep = loop.time() + PARKED_SWEEP_SECONDS
            await self._periodic("parked_sweep", lambda: self._parked_sweep(producer))
        await self._periodic("relay_alerts", lambda: relay_outbox(self.engine, producer, self.settings.topic_alerts))
        # Accepted events the broker forgot (a restarted embedded broker) are produced again from the ledger.
        await self._periodic(
            "redeliver", lambda: redeliver.redeliver_forgotten(self.engine, producer, self.settings, self._consumer_obj)
        )
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_intake_sweep:
            self._next_intake_sweep = loop.time() + INTAKE_SWEEP_SECONDS

            async def sweep_intake() -> None:
                async with unit_of_work(self.engine) as conn:
                    await worker_repo.clear_applied_intake(conn)

            await self._periodic("intake_sweep", sweep_intake)

    async def _relay(self, producer: AIOKafkaProducer) -> None:
        await self._periodic("relay_alerts", lambda: relay_outbox(self.engine, producer, self.settings.topic_alerts))

    async def _apply(self, records: list[Record], planned: Planned | None = None) -> BatchOutcome:
        """Apply records, waiting out transient failures; split a batch that fails for any other reason.

        Halves are applied on their own until the records at fault are alone; each of those becomes a dead
        letter with the database's reason, and everything else is applied. One bad message never stops a
        partition, and nothing is skipped silently.
        """
        s = self.settings
        try:
            outcome = await _retry(
                "apply_batch",
                lambda: apply_batch(
                    self.engine,
                    self.catalogue,
                    records,
                    future_skew_seconds=s.future_skew_seconds,
                    settings=s,
                    planned=(planned.decoded, planned.dead) if planned is not None else None,
                ),
                on_failure=self._not_ready,
            )
        except Exception as exc:
            if _transient(exc):  # pragma: no cover - _retry retries transient failures for ever
                raise
            if len(records) == 1:
                return await self._refuse(records[0], exc)
            log.warning("batch_split", records=len(records), error=type(exc).__name__, detail=_reason(exc))
            half = len(records) // 2
            first = await self._apply(records[:half])
            second = await self._apply(records[half:])
            return BatchOutcome(
                applied=first.applied + second.applied,
                duplicates=first.duplicates + second.duplicates,
                dead=first.dead + second.dead,
                lots_touched=first.lots_touched + second.lots_touched,
                alerts_changed=first.alerts_changed + second.alerts_changed,
                parked=first.parked + second.parked,
                unparked=first.unparked + second.unparked,
            )
        self.ready = True
        return outcome

    async def _apply_unparked(self, outcome: BatchOutcome) -> None:
        """Apply the parked events whose lots just got a holder (each round may free more), into ``outcome``."""
        for _ in range(16):
            if not outcome.unparked:
                return
            records, outcome.unparked = outcome.unparked, []
            more = await self._apply(records)
            outcome.applied += more.applied
            outcome.duplicates += more.duplicates
            outcome.dead += more.dead
            outcome.alerts_changed += more.alerts_changed
            outcome.unparked = more.unparked
        # Anything still freed is picked up by the next tick.

    async def _parked_sweep(self, producer: AIOKafkaProducer) -> None:
        """Parked events freed by another worker's commit, and those whose lot never got a holder."""
        # A parked event misses its lot's creation only when the two were committed by two workers at the same
        # time; those are recent. Every row is looked at now and then all the same.
        loop = asyncio.get_running_loop()
        window: float | None = PARKED_RACE_WINDOW_SECONDS
        if loop.time() >= self._next_full_parked_sweep:
            self._next_full_parked_sweep = loop.time() + PARKED_FULL_SWEEP_SECONDS
            window = None
        async with self.engine.connect() as conn:
            ready = parked_records(await worker_repo.ready_parked(conn, None, parked_within=window))
        outcome = await self._apply(ready) if ready else BatchOutcome()
        await self._apply_unparked(outcome)
        grace = self.settings.rules.park_seconds
        async with unit_of_work(self.engine) as conn:
            expired = await worker_repo.expire_parked(conn, grace)
            dead = [
                Dead(
                    position=Position(r[0], r[1], r[2]),
                    key=bytes(r[3]) if r[3] is not None else None,
                    raw=bytes(r[4]),
                    code="lot_unknown",
                    message=f"no creating event arrived within {grace} s for lot(s) {', '.join(r[8])}: only a lot's "
                    "holder (or an operator reporting for it) may report on it",
                    details=[{"lots": list(r[8])}],
                    event_id=r[6],
                    operator=r[7],
                    headers=list(headers_from_json(r[5])),
                )
                for r in expired
            ]
            await worker_repo.insert_dead_letters(conn, dead)
            await worker_repo.clear_intake(conn, [d.event_id for d in dead if d.event_id is not None])
        outcome.dead += dead
        if outcome.dead:
            await self._publish_dead(producer, outcome.dead)
        if outcome.alerts_changed:
            await self._relay(producer)

    async def _refuse(self, record: Record, exc: BaseException) -> BatchOutcome:
        """A message that cannot be applied on its own: a dead letter with the reason, in its own transaction."""
        log.error(
            "unapplicable_message",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=type(exc).__name__,
            detail=_reason(exc),
            exc_info=exc,
        )
        dead = unapplicable(
            Position(record.topic, record.partition, record.offset),
            record.key,
            record.value,
            list(record.headers),
            _reason(exc),
        )
        # The dead letter speaks for its event id (its status, its ledger row) only when the message is
        # authentically its sender's: a forged copy must not reject somebody else's accepted event.
        if not await self._authentic(record):
            dead.event_id, dead.operator = None, None

        async def store() -> None:
            async with unit_of_work(self.engine) as conn:
                await worker_repo.insert_dead_letters(conn, [dead])
                if dead.event_id is not None:
                    await worker_repo.clear_intake(conn, [dead.event_id])

        await _retry("store_dead_letter", store, on_failure=self._not_ready)
        return BatchOutcome(dead=[dead])

    async def _authentic(self, record: Record) -> bool:
        try:
            decoded, _ = plan(self.catalogue, [record], future_skew_seconds=self.settings.future_skew_seconds)
            if not decoded:
                return False
            async with self.engine.connect() as conn:
                kept, _ = await authn.authenticate(conn, decoded, self.settings)
            return bool(kept)
        except Exception:  # the check itself failing means: not shown to be authentic
            log.warning("authenticity_check_failed", topic=record.topic, offset=record.offset)
            return False

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batch: dict[Any, list[Any]],
        planned: Planned | None = None,
    ) -> BatchOutcome:
        if planned is None:
            records = _records(batch)
            good, bad = plan(
                self.catalogue, records, future_skew_seconds=self.settings.future_skew_seconds, mark=self._mark
            )
            planned = Planned(records, good, bad)
        records = planned.records
        outcome = await self._apply(records, planned)
        await self._apply_unparked(outcome)
        if outcome.dead:
            await _retry(
                "publish_dead_letters", lambda: self._publish_dead(producer, outcome.dead), on_failure=self._not_ready
            )
        offsets = {TopicPartition(tp.topic, tp.partition): msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
            # The partitions moved to another worker, which re-reads from the last commit; the
            # events table makes that replay a no-op.
            log.warning("commit_failed_after_rebalance", error=type(exc).__name__)
        except KafkaError as exc:
            # The broker is away: the batch is applied, and a replay after it returns is a no-op.
            log.warning("commit_failed", error=type(exc).__name__)
        self.batches += 1
        self.applied += len(outcome.applied)
        self.dead += len(outcome.dead)
        log.debug(
            "batch_applied",
            records=len(records),
            applied=len(outcome.applied),
            duplicates=outcome.duplicates,
            dead=len(outcome.dead),
        )
        for d in outcome.dead:
            log.warning(
                "dead_letter",
                topic=d.position.topic,
                partition=d.position.partition,
                offset=d.position.offset,
                event_id=str(d.event_id) if d.event_id else None,
                operator=d.operator,
                reason=d.code,
            )
        return outcome

    async def _publish_dead(self, producer: AIOKafkaProducer, dead: list[Dead]) -> None:
        futures = []
        for d in dead:
            headers = [
                *[(k, v) for k, v in d.headers if k not in ("error-code", "error-message")],
                ("error-code", d.code.encode()),
                ("error-message", d.message.encode()[:1000]),
                ("source-topic", d.position.topic.encode()),
                ("source-partition", str(d.position.partition).encode()),
                ("source-offset", str(d.position.offset).encode()),
            ]
            futures.append(await producer.send(self.settings.topic_dlq, value=d.raw, key=d.key, headers=headers))
        await asyncio.gather(*futures)


async def serve_health(worker: Worker, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP endpoint for probes: 200 while the worker can apply events, 503 while it waits."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await reader.readuntil(b"\r\n\r\n")
            body = orjson.dumps(
                {
                    "status": "ready" if worker.ready else "not_ready",
                    "batches": worker.batches,
                    "applied": worker.applied,
                    "dead": worker.dead,
                }
            )
            status = "200 OK" if worker.ready else "503 Service Unavailable\r\nRetry-After: 5"
            head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


async def run_worker(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> Worker:
    """Build the worker from settings, run it until ``stop`` is set, and release everything."""
    # A batch may legitimately take longer than an API query; a minute still catches a stuck statement.
    engine = create_engine(settings, pool_size=2, statement_timeout_ms=60_000, name="worker", custom_plans=False)
    worker = Worker(settings, engine, build_catalogue(settings.codes, settings.max_events_per_request))
    health = None
    if settings.worker_health_port is not None:
        health = await serve_health(worker, settings.worker_health_host, settings.worker_health_port)
    try:
        await worker.run(stop, ready)
    finally:
        if health is not None:
            health.close()
        await engine.dispose()
    return worker
