"""Kafka plumbing shared by the API and the worker: topic creation and client options."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from trace_service.settings import Settings

log = structlog.get_logger(__name__)


def topic_layout(settings: Settings) -> dict[str, int]:
    return {
        settings.topic_events: settings.events_partitions,
        settings.topic_dlq: settings.dlq_partitions,
        settings.topic_alerts: settings.alerts_partitions,
    }


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics with their partition counts; existing topics are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name=name, num_partitions=parts, replication_factor=settings.replication_factor)
            for name, parts in topic_layout(settings).items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(missing)
            log.info("topics_created", topics=[t.name for t in missing])
    finally:
        await admin.close()


def producer_options(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        # The broker used in development has no idempotent producer; duplicates are removed by event_id.
        "enable_idempotence": False,
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "max_request_size": max(settings.producer_max_batch_bytes, settings.body_limit_bytes + 1024),
        "request_timeout_ms": int(settings.produce_timeout_seconds * 1000),
        "retry_backoff_ms": 100,
    }
