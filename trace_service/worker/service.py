"""Applying one consumed batch: decode, deduplicate, store, dead-letter, all in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service import effects
from trace_service.access import repository as access_repo
from trace_service.alerts import engine as engine_
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts import rules
from trace_service.alerts.models import Finding
from trace_service.chain import ownership
from trace_service.chain import writes as chain
from trace_service.codes import service as codes
from trace_service.contract.events import Catalogue
from trace_service.db.uow import unit_of_work
from trace_service.epcis import store as epcis_store
from trace_service.market import service as market
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing
from trace_service.worker import authn
from trace_service.worker import repository as repo
from trace_service.worker.decode import Dead, Decoded, Position, conflicting, decode
from trace_service.worker.decode import refused as dead_letter_of


@dataclass(frozen=True)
class Record:
    """What the worker needs of a Kafka record (kept free of aiokafka so it can be built in tests)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    parked: bool = False  # taken from parked_events: its parked row goes in the same transaction


@dataclass
class BatchOutcome:
    applied: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    dead: list[Dead] = field(default_factory=list)
    lots_touched: int = 0
    alerts_changed: list[str] = field(default_factory=list)
    parked: int = 0
    # Parked events whose lots this batch gave a holder: the worker applies them next.
    unparked: list[Record] = field(default_factory=list)


def parked_records(rows: Sequence[Any]) -> list[Record]:
    return [
        Record(
            r[0], r[1], r[2], bytes(r[3]) if r[3] is not None else None, bytes(r[4]), repo.headers_from_json(r[5]), True
        )
        for r in rows
    ]


def _refused(item: Decoded, refusal: ownership.Refusal) -> Dead:
    details = [{"field": refusal.field, "lot": refusal.lot, "holder": refusal.holder}]
    return dead_letter_of(item, refusal.code, refusal.message, details)


async def judge_ownership(
    conn: AsyncConnection, items: Sequence[Decoded]
) -> tuple[list[Decoded], list[tuple[Decoded, list[str]]], list[Dead], list[Finding]]:
    """Contract section 7 for a batch: the events that may be applied, those that wait for a lot's holder, and
    the refused ones (``not_holder``, ``lot_taken``) with their alerts. Events are taken in batch order, so a
    lot created earlier in the batch has its holder for the events after it."""
    held = await chain.holders(conn, ownership.codes_of(d.event for d in items))
    senders = {d.event.operator for d in items}
    lineage = await access_repo.ancestry(conn, sorted(set(held.values()) | senders))
    kept: list[Decoded] = []
    waiting: list[tuple[Decoded, list[str]]] = []
    dead: list[Dead] = []
    findings: list[Finding] = []
    for item in items:
        actor = item.actor
        roots = actor.roots if actor is not None else (item.event.operator,)
        verdict = ownership.judge(
            item.event,
            held,
            lambda holder, roots=roots: ownership.in_scope(holder, roots, lineage),  # type: ignore[misc]
            staff=actor.staff if actor is not None else False,
        )
        if verdict.refusal is not None:
            dead.append(_refused(item, verdict.refusal))
            findings.append(rules.not_holder(item.event, verdict.refusal))
        elif verdict.waits_for:
            waiting.append((item, verdict.waits_for))
        else:
            kept.append(item)
            for claim in ownership.claims(item.event):
                if claim.creates:
                    held.setdefault(claim.code, item.event.operator)
            # A lot handed on earlier in the batch (EPCIS shipping) is the new holder's for the events after it.
            for code, holder in ownership.custody_passes(item.event):
                held[code] = holder
                lineage.update(await access_repo.ancestry(conn, [holder]))
    return kept, waiting, dead, findings


async def refuse_misissued(conn: AsyncConnection, items: Sequence[Decoded]) -> tuple[list[Decoded], list[Dead]]:
    """Events naming a code under an issuer's prefix that is no well-formed issued code become dead letters
    ``invalid_event`` with the same details the API's 422 gives."""
    found = await codes.misissued_codes(conn, [d.event for d in items])
    if not found:
        return list(items), []
    kept = [d for i, d in enumerate(items) if i not in found]
    dead = [
        dead_letter_of(d, "invalid_event", "the event does not match the contract", found[i])
        for i, d in enumerate(items)
        if i in found
    ]
    return kept, dead


def plan(
    catalogue: Catalogue,
    records: Sequence[Record],
    *,
    future_skew_seconds: int,
    mark: authn.ApiMark | None = None,
) -> tuple[list[Decoded], list[Dead]]:
    """Decode a batch: the messages that are events, and the dead letters of the rest. Pure: no I/O, so the
    worker runs it for the next batch while the current batch's transaction runs.

    With ``mark``, each event's claim is read and the API's HMAC verified here too (see authn.ApiMark).
    """
    now = datetime.now(UTC)
    good: list[Decoded] = []
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
        else:
            if mark is not None:
                mark.check(item)
            good.append(item)
    return good, dead


def dedupe(items: Sequence[Decoded]) -> tuple[list[Decoded], list[Dead]]:
    """Drop repeats inside a batch: the first copy of an id wins, a different copy is dead.

    Run on authenticated items only: a forged copy ahead of the real message must not win.
    """
    good: dict[uuid.UUID, Decoded] = {}
    dead: list[Dead] = []
    for item in items:
        event_id: uuid.UUID = item.event.event_id
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
    planned: tuple[Sequence[Decoded], Sequence[Dead]] | None = None,
) -> BatchOutcome:
    """Apply ``records`` in one transaction. ``planned``: what :func:`plan` made of exactly these records,
    decoded ahead of the transaction (the worker's loop); decoded here otherwise."""
    if planned is None:
        decoded, dead = plan(catalogue, records, future_skew_seconds=future_skew_seconds)
    else:
        decoded, dead = list(planned[0]), list(planned[1])
    outcome = BatchOutcome()
    async with unit_of_work(engine) as conn:
        from_park = [(r.topic, r.partition, r.offset) for r in records if r.parked]
        await repo.unpark(conn, from_park)
        # Who sent each message (contract section 8); unsigned or unauthorized messages become dead letters,
        # and so do repeats of an id inside the batch, among the authenticated ones only.
        dead = await authn.vouch_for_dead(conn, dead, settings)
        decoded, refused = await authn.authenticate(conn, decoded, settings)
        dead += refused
        decoded, clashes = dedupe(decoded)
        dead += clashes
        # The part of validation that needs the issuers (contract section 1), as the API does it.
        decoded, misissued = await refuse_misissued(conn, decoded)
        dead += misissued
        # Who may change each lot (section 7): refused events are dead letters; events about a lot with no
        # holder yet wait for its creating event.
        decoded, waiting, refused, owner_findings = await judge_ownership(conn, decoded)
        dead += refused
        await repo.park(conn, waiting)
        await chain.ensure_lots(conn, [c for _, codes in waiting for c in codes])  # upstream_missing watches them
        outcome.parked = len(waiting)
        new_ids = await repo.insert_events(conn, decoded)
        repeats = [d for d in decoded if d.event.event_id not in new_ids]
        if repeats:
            stored = await repo.stored_fingerprints(conn, [d.event.event_id for d in repeats])
            for item in repeats:
                if stored.get(item.event.event_id) == item.sha256:
                    outcome.duplicates += 1
                else:
                    dead.append(conflicting(item))
        await repo.clear_intake(
            conn,
            [d.event.event_id for d in decoded] + [d.event_id for d in refused + misissued if d.event_id is not None],
        )
        # Only events stored for the first time change the graph: a redelivered batch is a no-op.
        fresh = [d.event for d in decoded if d.event.event_id in new_ids]
        graph_plan = effects.graph_plan(fresh)
        applied = await chain.apply_plan(conn, graph_plan)
        outcome.lots_touched = len(applied.touched)
        findings: list[Finding] = list(owner_findings)
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
        market_cells: list[tuple[date, str, str]] = []
        findings += await market.apply(conn, fresh, settings, shard=shard, changed=market_cells)
        outcome.alerts_changed = await alerts_repo.write_findings(conn, findings)
        await repo.insert_dead_letters(conn, dead)
        # The EPCIS index: every event applied for the first time, served by GET /epcis/events.
        await epcis_store.record(conn, fresh)
        created = sorted(
            {c.code for ev in fresh for c in ownership.claims(ev) if c.creates} | set(applied.holder_changed)
        )
        outcome.unparked = parked_records(await repo.ready_parked(conn, created))
        # The shared stream last: its lock is held from here to the commit (sharing/repository.py).
        await sharing.append(
            conn,
            event_ids=[ev.event_id for ev in fresh],
            market_cells=market_cells,
        )
    outcome.applied = [d.event.event_id for d in decoded if d.event.event_id in new_ids]
    outcome.dead = dead
    return outcome
