"""The API's Kafka producer, started lazily so the API runs (and says it is not ready) without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from trace_service.access import keys
from trace_service.access.integrators import require_master
from trace_service.access.models import Principal
from trace_service.contract import signing
from trace_service.errors import DependencyDown
from trace_service.kafka import producer_options
from trace_service.settings import Settings

log = structlog.get_logger(__name__)

Headers = list[tuple[str, bytes]]


class EventPublisher:
    def __init__(self, settings: Settings) -> None:
        # No secret, no API: an unsigned (or guessable) mark would let any producer report as any operator,
        # so the API refuses to start (SigningNotConfigured) rather than produce what the worker refuses.
        self._api_secret = keys.api_signing_secret(require_master(settings))
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**producer_options(self._settings))
                try:
                    async with asyncio.timeout(self._settings.produce_timeout_seconds):
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise self._down(exc) from exc
                self._producer = producer
            return self._producer

    def _down(self, exc: BaseException) -> DependencyDown:
        log.warning("broker_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
        return DependencyDown(
            "the event broker is unavailable; retry later", retry_after=self._settings.retry_after_seconds
        )

    def headers_for(self, principal: Principal, key: bytes, value: bytes) -> Headers:
        """The API's mark on a message it produces for ``principal`` (contract section 8).

        Signed with the API's secret under the reserved key id ``api``, naming the actor the API
        authenticated: ``staff`` for a regulator or admin key, else the key's operator. The worker
        authorizes the event for that actor, and records ``source = api`` only for a valid mark;
        ``trace-source`` stays for readers of the topic and proves nothing.
        """
        actor = signing.STAFF_ACTOR if principal.is_staff else principal.operator
        if actor is None:  # pragma: no cover - an operator key always has an operator
            raise ValueError("an operator key without an operator")
        return [
            (signing.SOURCE_HEADER, b"api"),
            *signing.sign_headers(signing.API_KEY_ID, self._api_secret, key, value, actor=actor),
        ]

    async def publish(self, topic: str, messages: Sequence[tuple[bytes, bytes, Headers]]) -> None:
        """Produce (key, value, headers) and return once the broker acknowledged every one (acks=all).

        Raises DependencyDown when any is not acknowledged in time. Messages the broker did take are
        then in the log; the client's retry of the same events is deduplicated on event_id.
        """
        producer = await self._ensure()
        try:
            async with asyncio.timeout(self._settings.produce_timeout_seconds):
                futures = [
                    await producer.send(topic, value=value, key=key, headers=headers)
                    for key, value, headers in messages
                ]
                await asyncio.gather(*futures)
        except (KafkaError, OSError, TimeoutError) as exc:
            # A producer that failed may hold broken connections and stale metadata: start afresh.
            await self._reset()
            raise self._down(exc) from exc

    async def ping(self) -> None:
        producer = await self._ensure()
        try:
            async with asyncio.timeout(3):
                await producer.client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._reset()
            raise self._down(exc) from exc

    async def _reset(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                async with asyncio.timeout(2):
                    await producer.stop()
            except (KafkaError, OSError, TimeoutError):
                log.warning("producer_stop_failed")

    async def close(self) -> None:
        await self._reset()
