"""Applying one consumed batch: decode, deduplicate, store, dead-letter, all in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.alerts import engine as engine_
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import Finding
from trace_service.chain import projection
from trace_service.chain import repository as chain
from trace_service.contract.events import Catalogue
from trace_service.market import service as market
from trace_service.settings import Settings
from trace_service.worker import authn
from trace_service.worker import repository as repo
from trace_service.worker.decode import Dead, Decoded, Position, conflicting, decode


@dataclass(frozen=True)
class Record:
    """What the worker needs of a Kafka record (kept free of aiokafka so it can be built in tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class BatchOutcome:
    applied: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    dead: list[Dead] = field(default_factory=list)
    lots_touched: int = 0
    alerts_changed: list[str] = field(default_factory=list)


def plan(
    catalogue: Catalogue, records: Sequence[Record], *, future_skew_seconds: int
) -> tuple[list[Decoded], list[Dead]]:
    """Decode a batch and drop repeats inside it: the first copy of an id wins, a different copy is dead."""
    now = datetime.now(UTC)
    good: dict[uuid.UUID, Decoded] = {}
    dead: list[Dead] = []
    for rec in records:
        item = decode(
            catalogue,
            Position(rec.topic, rec.partition, rec.offset),
            rec.key,
            rec.value,
            list(rec.headers),
            now=now,
            future_skew_seconds=future_skew_seconds,
        )
        if isinstance(item, Dead):
            dead.append(item)
            continue
        event_id: uuid.UUID = item.event.event_id  # type: ignore[attr-defined]
        first = good.get(event_id)
        if first is None:
            good[event_id] = item
        elif first.sha256 != item.sha256:
            dead.append(conflicting(item))
    return list(good.values()), dead


async def apply_batch(
    engine: AsyncEngine,
    catalogue: Catalogue,
    records: Sequence[Record],
    *,
    future_skew_seconds: int,
    settings: Settings,
) -> BatchOutcome:
    decoded, dead = plan(catalogue, records, future_skew_seconds=future_skew_seconds)
    outcome = BatchOutcome()
    async with engine.begin() as conn:
        # Who sent each message (contract section 8); unsigned or unauthorized messages become dead letters.
        decoded, refused = await authn.authenticate(conn, decoded, settings)
        dead += refused
        new_ids = await repo.insert_events(conn, decoded)
        repeats = [d for d in decoded if d.event.event_id not in new_ids]  # type: ignore[attr-defined]
        if repeats:
            stored = await repo.stored_fingerprints(conn, [d.event.event_id for d in repeats])  # type: ignore[attr-defined]
            for item in repeats:
                if stored.get(item.event.event_id) == item.sha256:  # type: ignore[attr-defined]
                    outcome.duplicates += 1
                else:
                    dead.append(conflicting(item))
        await repo.clear_intake(conn, [d.event.event_id for d in decoded])  # type: ignore[attr-defined]
        # Only events stored for the first time change the graph: a redelivered batch is a no-op.
        fresh = [d.event for d in decoded if d.event.event_id in new_ids]  # type: ignore[attr-defined]
        graph_plan = projection.plan(fresh)
        applied = await chain.apply_plan(conn, graph_plan)
        outcome.lots_touched = len(applied.touched)
        findings: list[Finding] = []
        if settings.rules.enabled:
            conflicts = [
                (d.event_id, d.operator, d.position.topic, d.position.partition, d.position.offset)
                for d in dead
                if d.code == "conflicting_duplicate" and d.event_id is not None
            ]
            findings += await engine_.judge_batch(conn, graph_plan, fresh, applied, conflicts, settings.rules)
        # Daily market figures (sums of the fresh events only) and the market rules on the cells touched.
        # The rolled-up market rows this batch adds to are those of a partition this worker owns.
        shard = min((d.position.partition for d in decoded), default=0)
        findings += await market.apply(conn, fresh, settings, shard=shard)
        outcome.alerts_changed = await alerts_repo.write_findings(conn, findings)
        await repo.insert_dead_letters(conn, dead)
    outcome.applied = [d.event.event_id for d in decoded if d.event.event_id in new_ids]  # type: ignore[attr-defined]
    outcome.dead = dead
    return outcome
