"""The worker process: a consumer group on the events topic.

Loop: ``getmany`` → apply the batch in one transaction → publish its dead letters → commit the
offsets. Offsets are committed only after the database commit, so a crash re-reads the batch and the
unique ``event_id`` makes the replay a no-op. SIGTERM lets the batch in hand finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.alerts import engine as alert_engine
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.relay import relay_outbox
from trace_service.contract.events import Catalogue, build_catalogue
from trace_service.db.engine import create_engine
from trace_service.kafka import ensure_topics, producer_options
from trace_service.market import service as market
from trace_service.settings import Settings
from trace_service.worker import repository as worker_repo
from trace_service.worker.decode import Dead
from trace_service.worker.service import BatchOutcome, Record, apply_batch

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
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
            getattr(exc.orig, "__cause__", None), "sqlstate", None
        )
        return sqlstate in _TRANSIENT_SQLSTATES
    return False


async def _retry(
    what: str, fn: Callable[[], Awaitable[T]], attempts: int, is_transient: Callable[[BaseException], bool]
) -> T:
    delay = 0.1
    for attempt in range(attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            log.warning("retrying", what=what, attempt=attempt + 1, error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")  # pragma: no cover


# How often a worker deletes intake rows whose events it already applied (see clear_applied_intake).
INTAKE_SWEEP_SECONDS = 30.0


class Worker:
    def __init__(self, settings: Settings, engine: AsyncEngine, catalogue: Catalogue) -> None:
        self.settings = settings
        self.engine = engine
        self.catalogue = catalogue
        self.batches = 0
        self.applied = 0
        self._consumer_obj: AIOKafkaConsumer | None = None
        self._next_intake_sweep = 0.0

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
        await _retry("ensure_topics", lambda: ensure_topics(s), 10, lambda e: isinstance(e, KafkaError | OSError))
        consumer = self._consumer_obj = self._consumer()
        producer = AIOKafkaProducer(**producer_options(s))
        await consumer.start()
        try:
            await producer.start()
            if ready is not None:
                ready.set()
            log.info("worker_started", topic=s.topic_events, group=s.consumer_group)
            loop = asyncio.get_running_loop()
            next_tick = loop.time()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=s.worker_poll_timeout_ms, max_records=s.worker_max_records)
                if batch:
                    outcome = await self._handle(consumer, producer, batch)
                    if outcome.alerts_changed:
                        await self._relay(producer)
                if loop.time() >= next_tick:
                    next_tick = loop.time() + s.rules.tick_seconds
                    await self._tick(producer)
        finally:
            await consumer.stop()
            await producer.stop()
            log.info("worker_stopped", batches=self.batches, applied=self.applied)

    async def _tick(self, producer: AIOKafkaProducer) -> None:
        """Due absence checks, the upstream_missing sweeper, and any outbox rows left behind."""

        async def run() -> list[str]:
            async with self.engine.begin() as conn:
                changed = await alert_engine.tick(conn, self.settings.rules) if self.settings.rules.enabled else []
                # Market rules that judge on the clock: settled hours, finished days, silent markets.
                changed += await alerts_repo.write_findings(conn, await market.sweep(conn, self.settings))
                return changed

        await _retry("alert_tick", run, self.settings.worker_max_db_retries, _transient)
        await self._relay(producer)
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_intake_sweep:
            self._next_intake_sweep = loop.time() + INTAKE_SWEEP_SECONDS

            async def sweep_intake() -> int:
                async with self.engine.begin() as conn:
                    return await worker_repo.clear_applied_intake(conn)

            await _retry("intake_sweep", sweep_intake, self.settings.worker_max_db_retries, _transient)

    async def _relay(self, producer: AIOKafkaProducer) -> None:
        await _retry(
            "relay_alerts",
            lambda: relay_outbox(self.engine, producer, self.settings.topic_alerts),
            10,
            lambda e: isinstance(e, KafkaError | OSError) or _transient(e),
        )

    async def _handle(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, batch: dict[Any, list[Any]]
    ) -> BatchOutcome:
        s = self.settings
        records = [
            Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
            for msgs in batch.values()
            for r in msgs
        ]
        outcome: BatchOutcome = await _retry(
            "apply_batch",
            lambda: apply_batch(
                self.engine, self.catalogue, records, future_skew_seconds=s.future_skew_seconds, settings=s
            ),
            s.worker_max_db_retries,
            _transient,
        )
        if outcome.dead:
            await _retry(
                "publish_dead_letters",
                lambda: self._publish_dead(producer, outcome.dead),
                10,
                lambda e: isinstance(e, KafkaError | OSError),
            )
        offsets = {TopicPartition(tp.topic, tp.partition): msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
            # The partitions moved to another worker, which re-reads from the last commit; the
            # events table makes that replay a no-op.
            log.warning("commit_failed_after_rebalance", error=type(exc).__name__)
        self.batches += 1
        self.applied += len(outcome.applied)
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


async def run_worker(settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> Worker:
    """Build the worker from settings, run it until ``stop`` is set, and release everything."""
    # A batch may legitimately take longer than an API query; a minute still catches a stuck statement.
    engine = create_engine(settings, pool_size=2, statement_timeout_ms=60_000, name="worker", custom_plans=False)
    worker = Worker(settings, engine, build_catalogue(settings.codes, settings.max_events_per_request))
    try:
        await worker.run(stop, ready)
    finally:
        await engine.dispose()
    return worker
