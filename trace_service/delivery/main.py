"""The ``deliver`` process: sends the shared stream to every subscription's receiver.

* **A task per subscription.** Each subscription this process holds is served by its own task, one batch at a
  time and in ``seq`` order (:mod:`trace_service.delivery.batches`). A receiver that is slow, hangs or is gone
  holds up only its own task: every request has a timeout, and at most ``TRACE_WEBHOOK_CONCURRENCY`` requests
  are in flight, so the others go on.
* **Leases.** Several ``deliver`` processes may run at once. Each claims subscriptions that no live process
  holds (``FOR UPDATE SKIP LOCKED``), renews its leases while it runs, and gives them back when it stops; the
  subscriptions of a process that died are taken over once their leases expire. A lease always outlasts the
  request in flight (it is renewed right before each batch and is longer than a request's timeout plus the
  statements around it), so two processes never send one subscription's batches at the same time, and every
  write is fenced by the lease.
* **Latency.** The stream's head is read every ``TRACE_WEBHOOK_POLL_SECONDS``; a new head wakes the tasks, and
  whatever is there is sent at once, without waiting to fill a batch.

SIGTERM lets the requests in flight finish (up to their timeout), then gives the leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from dataclasses import dataclass, field

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.access import integrators
from trace_service.db.engine import create_engine
from trace_service.db.uow import unit_of_work
from trace_service.delivery import batches, rules
from trace_service.delivery import repository as repo
from trace_service.delivery import service as subscriptions
from trace_service.delivery.batches import Outcome
from trace_service.delivery.transport import Sender
from trace_service.settings import Settings
from trace_service.sharing import service as sharing

log = structlog.get_logger(__name__)

CLAIM_AT_ONCE = 50  # subscriptions claimed per round, so that several starting processes share them out
PRUNE_SECONDS = 3600.0
STOP_GRACE_SECONDS = 5.0
ERROR_BACKOFF_FIRST = 0.5
ERROR_BACKOFF_MAX = 30.0


def _transient(exc: BaseException) -> bool:
    """Postgres is away or restarting (a lost connection, a refused one, a statement cut short)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError | asyncpg.PostgresConnectionError)


def instance_name() -> str:
    """This process's name as a lease owner: host, pid and a random tag (a restarted pid is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def lease_seconds(settings: Settings) -> float:
    """A lease covers the statements of a step (renewal, key, page, pin) and the request's whole timeout."""
    statements = 4 * settings.statement_timeout_ms / 1000
    return max(settings.webhook_lease_seconds, settings.webhook_timeout_seconds + statements + 5.0)


@dataclass
class _Held:
    """A subscription this process serves, and what its task last learnt of it."""

    id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    cursor: int | None = None  # None: not known (just claimed, or changed elsewhere): read it at once
    idle_head: int = 0  # the head at which the stream last held nothing new for it
    due: float = 0.0  # loop time before which its failed batch is not tried again
    stop: bool = False


class Deliverer:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, read_engine: AsyncEngine, sender: Sender, master: bytes, me: str
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.read_engine = read_engine
        self.me = me
        self.lease = lease_seconds(settings)
        self.ctx = batches.Context(settings, engine, sender, master, me, self.lease)
        self.sender = sender
        self.head = 0
        self.held: dict[str, _Held] = {}
        self.slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.ready = False
        self.delivered = 0
        self.failed = 0
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self._stop = stop
        watcher = asyncio.create_task(self._watch_head(), name="deliver-head")
        log.info("deliverer_started", deliverer=self.me, lease_seconds=self.lease)
        try:
            await self._manage(ready)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._shutdown()
            log.info("deliverer_stopped", deliverer=self.me, delivered=self.delivered, failed=self.failed)

    # -- the stream's head ------------------------------------------------------------------------------

    async def _watch_head(self) -> None:
        poll = self.settings.webhook_poll_seconds
        while True:
            try:
                async with self.read_engine.connect() as conn:
                    head = await sharing.head(conn)
            except Exception as exc:
                self._not_ready("head", exc)
                await asyncio.sleep(max(poll, 1.0))
                continue
            if head != self.head:
                self.head = head
                for held in self.held.values():
                    held.wake.set()
            await asyncio.sleep(poll)

    # -- claiming, renewing, noticing changes ---------------------------------------------------------------

    async def _manage(self, ready: asyncio.Event | None) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        next_renew = next_prune = 0.0
        while not self._stop.is_set():
            try:
                async with unit_of_work(self.engine) as conn:
                    if loop.time() >= next_renew:
                        await repo.renew_all(conn, self.me, self.lease)
                        next_renew = loop.time() + self.lease / 3
                    state = await repo.held(conn, self.me)
                    room = s.webhook_max_subscriptions - len(self.held)
                    claimed = await repo.claim(conn, self.me, self.lease, min(room, CLAIM_AT_ONCE))
                    stale = [i for i, (status, _, _) in state.items() if status != "active" and i not in self.held]
                    if stale:
                        await repo.release(conn, self.me, stale)
                self._reconcile(state)
                for subscription_id in claimed:
                    self._serve(subscription_id)
                if loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_SECONDS
                    async with unit_of_work(self.engine) as conn:
                        await repo.prune_attempts(conn, s.webhook_attempts_keep_days)
                if not self.ready:
                    log.info("deliverer_ready", deliverer=self.me, held=len(self.held))
                self.ready = True
                if ready is not None:
                    ready.set()
            except Exception as exc:
                self._not_ready("claim", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=s.webhook_claim_seconds)

    def _reconcile(self, state: dict[str, tuple[str, int, str | None]]) -> None:
        """Stop the tasks of subscriptions lost, paused or ended; re-read those changed elsewhere (a replay)."""
        for subscription_id, held in list(self.held.items()):
            seen = state.get(subscription_id)
            if seen is None or seen[0] != "active":
                held.stop = True
                held.wake.set()
            elif held.cursor is not None and seen[1] != held.cursor:
                held.cursor = None
                held.due = 0.0
                held.wake.set()
        for subscription_id, (status, _, _) in state.items():
            if status == "active" and subscription_id not in self.held:
                self._serve(subscription_id)  # held but not served: a task that failed to start

    def _serve(self, subscription_id: str) -> None:
        if subscription_id in self.held:
            return
        held = _Held(subscription_id)
        self.held[subscription_id] = held
        held.task = asyncio.create_task(self._run_one(held), name=f"deliver-{subscription_id}")

    # -- one subscription --------------------------------------------------------------------------------

    def _due(self, held: _Held, now: float) -> bool:
        if held.cursor is None:
            return True
        return now >= held.due and self.head > max(held.cursor, held.idle_head)

    async def _run_one(self, held: _Held) -> None:
        loop = asyncio.get_running_loop()
        errors = 0
        try:
            while not held.stop and not self._stop.is_set():
                held.wake.clear()  # before the check: a head that moves after it still wakes the wait below
                now = loop.time()
                if not self._due(held, now):
                    timeout = held.due - now if held.due > now else self.lease / 3
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(held.wake.wait(), timeout=timeout)
                    if held.due and loop.time() >= held.due:
                        held.cursor = None  # a retry is due: read the subscription again
                    continue
                head_before = self.head
                try:
                    async with self.slots:
                        result = await batches.step(self.ctx, held.id)
                except Exception as exc:
                    errors += 1
                    wait = rules.backoff(errors, ERROR_BACKOFF_FIRST, ERROR_BACKOFF_MAX)
                    if _transient(exc):  # Postgres away: the step is tried again, nothing was lost
                        self._not_ready("step", exc)
                    else:
                        log.error("delivery_step_failed", subscription=held.id, error=type(exc).__name__, exc_info=exc)
                    held.cursor, held.due = None, loop.time() + wait
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=wait)
                    continue
                errors = 0
                if result.outcome is Outcome.GONE:
                    return
                held.cursor = result.cursor
                if result.outcome is Outcome.DELIVERED:
                    self.delivered += 1
                if result.outcome is Outcome.IDLE:
                    held.idle_head = head_before
                if result.outcome in (Outcome.WAITING, Outcome.FAILED):
                    if result.outcome is Outcome.FAILED:
                        self.failed += 1
                    held.due = loop.time() + (result.wait or 0.0)
                else:
                    held.due = 0.0
        finally:
            self.held.pop(held.id, None)
            with contextlib.suppress(Exception):
                async with unit_of_work(self.engine) as conn:
                    await repo.release(conn, self.me, [held.id])

    # -- stopping ----------------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        tasks = [h.task for h in self.held.values() if h.task is not None]
        for held in self.held.values():
            held.stop = True
            held.wake.set()
        if tasks:
            # Requests in flight finish (their timeout bounds them); a step that waits is told to stop.
            _, pending = await asyncio.wait(tasks, timeout=self.settings.webhook_timeout_seconds + STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            async with unit_of_work(self.engine) as conn:
                await repo.release(conn, self.me)
        except Exception as exc:
            log.warning("lease_release_failed", deliverer=self.me, error=type(exc).__name__)
        self.ready = False

    def _not_ready(self, what: str, exc: BaseException) -> None:
        if self.ready:
            log.warning("deliverer_not_ready", what=what, error=type(exc).__name__, detail=str(exc)[:200])
        self.ready = False


async def run_deliverer(
    settings: Settings, stop: asyncio.Event, ready: asyncio.Event | None = None, instance: str | None = None
) -> Deliverer:
    """Build a deliverer from settings, run it until ``stop`` is set, and release everything."""
    master = integrators.require_master(settings)
    engine = create_engine(settings, pool_size=settings.db_pool_size, name="deliver")
    read_engine = create_engine(settings, pool_size=1, name="deliver-head", read_only=True)
    policy = await subscriptions.policy(settings)
    connections = settings.webhook_concurrency + 8
    sender = Sender(policy, timeout=settings.webhook_timeout_seconds, connections=connections)
    deliverer = Deliverer(settings, engine, read_engine, sender, master, instance or instance_name())
    try:
        await deliverer.run(stop, ready)
    finally:
        await sender.close()
        await engine.dispose()
        await read_engine.dispose()
    return deliverer
