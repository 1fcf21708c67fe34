"""Running the rules: on each batch inside its transaction, and on the worker's tick for the rules that
judge an absence (after the settle delay) and for upstream_missing (after the grace period)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.alerts import facts, rules
from trace_service.alerts import repository as repo
from trace_service.alerts.models import Finding
from trace_service.chain.projection import Plan
from trace_service.chain.writes import Applied
from trace_service.contract.events import Event
from trace_service.settings import RuleSettings

RELEASE_CHECK = "release"
LOT_CHECK = "lot"
CERTIFICATE_CHECK = "certificate"
VOUCHER_CHECK = "voucher"
COLD_CHECK = "cold_chain"
IMPORT_CHECK = "import_docs"
TICK_LOCK = 7_346_222


async def judge_batch(
    conn: AsyncConnection,
    plan: Plan,
    fresh: Sequence[Event],
    applied: Applied,
    conflicts: Sequence[tuple[uuid.UUID, str | None, str, int, int]],
    s: RuleSettings,
) -> list[Finding]:
    """Findings of the integrity rules about what this batch changed."""
    findings: list[Finding] = []
    ids = applied.ids
    at_of = {ev.event_id: ev.occurred_at for ev in fresh}

    findings += rules.ear_tag_reused(await facts.tag_uses(conn, sorted({t.tag for t in plan.ear_tags})))

    numbers = sorted({c.number for c in plan.certificates} | {c.number for c in plan.claims})
    certs, claims = await facts.certificates(conn, numbers)
    findings += rules.certificate_rules(certs, claims, s)
    # Findings that a later report can undo (a second intake on the certificate, the seller's own
    # shipment, a voucher's missing line) are judged again after the settle delay, only if they hold now.
    deferred: list[tuple[str, str]] = [
        (CERTIFICATE_CHECK, str(f.evidence["certificate"])) for f in rules.certificate_head_counts(certs, claims)
    ]

    findings += rules.batch_rules(await facts.batches(conn, applied.touched), s)

    # Shipments out of carcass lots wait for late ASF results and certificates: queue their checks.
    carcass_new = [ids[c.code] for c in plan.creations if c.kind == "carcass"]
    sources = {ids[x.lot] for x in plan.shipment_lines} | {ids[e.parent] for e in plan.edges if e.kind == "trade"}
    batch_events = [ev.event_id for ev in fresh]
    checks = await facts.carcass_outflows(conn, sorted(sources - set(carcass_new)), batch_events)
    checks += await facts.carcass_outflows(conn, carcass_new, None)
    await queue_checks(conn, checks, s)

    stop_items = [
        (
            f.lot,
            f.fact,
            f.data.get("test"),
            f.data.get("value"),
            _operator(fresh, f.event_id),
            f.occurred_at,
            f.event_id,
        )
        for f in plan.facts
        if (f.fact == "asf" and f.result == "positive") or (f.fact == "test" and f.result == "fail")
    ]
    findings += rules.stop_rules(await facts.stops(conn, stop_items))

    # A trade after a stop, whichever arrived first: the lots traded in this batch, and every lot whose
    # stop this batch changed (its own or inherited).
    trading = sources | {ids[e.parent] for e in plan.edges if e.kind == "sale"} | set(applied.touched)
    trading |= applied.stop_changed
    findings += rules.stopped_lot_traded(await facts.outflows(conn, sorted(trading)))

    uses: dict[str, tuple[datetime, uuid.UUID]] = {}

    def use(code: str, at: datetime, event_id: uuid.UUID) -> None:
        if code not in uses or at < uses[code][0]:
            uses[code] = (at, event_id)

    for f in plan.facts:
        use(f.lot, f.occurred_at, f.event_id)
    for line in plan.shipment_lines:
        use(line.lot, at_of[line.event_id], line.event_id)
    for e in plan.edges:
        use(e.parent, at_of[e.event_id], e.event_id)
    created = {c.code for c in plan.creations}
    states = await facts.lot_states(conn, applied.touched, uses, created)
    findings += rules.lot_rules(states, s)
    deferred += [(LOT_CHECK, f.subject_code) for f in rules.mass_balance(states, s)]

    keys = sorted({x.voucher_key for x in plan.shipment_lines} | {e.voucher_key for e in plan.edges if e.voucher_key})
    deferred += [(VOUCHER_CHECK, f.subject_code) for f in rules.shipment_mismatch(await facts.vouchers(conn, keys), s)]
    deferred += await cold_chain_checks(conn, plan, ids, s)
    await queue_subjects(conn, deferred, s)

    findings += rules.conflicting_duplicates(list(conflicts))
    return findings


# -- cold chain (issue 14) ----------------------------------------------------------------------------------
# Both rules can be undone by a report that is merely late (a reading back below the limit splits an
# excursion; a certificate dated before the trade), so a batch only queues what holds now, and the tick
# judges it again after the settle delay.


async def cold_chain_checks(
    conn: AsyncConnection, plan: Plan, ids: dict[str, int], s: RuleSettings
) -> list[tuple[str, str]]:
    """The cold_chain_break and import_docs_missing subjects to judge again after the settle delay."""
    subjects: list[tuple[str, str]] = []
    # cold_chain_break: lots with new readings, and those below a lot that may just have become a frozen lot's
    # descendant (a creation, a new edge), whichever arrived first. Batches with none of these skip it.
    frozen_created = [ids[c.code] for c in plan.creations if c.documents.get("storage") == "frozen"]
    seeds = {ids[t.lot] for t in plan.temperatures} | set(frozen_created) | {ids[e.child] for e in plan.edges}
    if plan.temperatures or frozen_created or plan.edges:
        cold = rules.cold_chain_break(await facts.cold_lots(conn, sorted(seeds)), s)
        subjects += [(COLD_CHECK, f.subject_code) for f in cold]
    # import_docs_missing: what left a lot (shipped, sold) in this batch, and imports created or given documents.
    leaving = {ids[x.lot] for x in plan.shipment_lines} | {ids[e.parent] for e in plan.edges if e.kind == "sale"}
    leaving |= {ids[f.lot] for f in plan.facts if f.fact in ("shipped", "sold", "import_docs")}
    leaving |= {ids[c.code] for c in plan.creations if c.kind == "imported"}
    if leaving:
        imports = await facts.imported_lots(conn, await facts.imported_above(conn, sorted(leaving)))
        subjects += [(IMPORT_CHECK, f.subject_code) for f in rules.import_docs_missing(imports)]
    return subjects


def _operator(fresh: Sequence[Event], event_id: uuid.UUID) -> str:
    for ev in fresh:
        if ev.event_id == event_id:
            return str(ev.operator)
    return ""


async def queue_checks(conn: AsyncConnection, checks: list[dict[str, Any]], s: RuleSettings) -> None:
    if not checks:
        return
    due = datetime.now(UTC) + timedelta(seconds=s.settle_seconds)
    await conn.exec_driver_sql(
        """INSERT INTO pending_checks (rule, subject_code, due_at, data)
           SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::jsonb[]) ORDER BY 1
           ON CONFLICT (rule, subject_code) DO NOTHING""",
        (
            RELEASE_CHECK,
            [f"{c['carcass']}/{c['event_id']}" for c in checks],
            [due] * len(checks),
            [orjson.dumps(c).decode() for c in checks],
        ),
    )


async def queue_subjects(conn: AsyncConnection, subjects: list[tuple[str, str]], s: RuleSettings) -> None:
    if not subjects:
        return
    due = datetime.now(UTC) + timedelta(seconds=s.settle_seconds)
    unique = sorted(set(subjects))
    await conn.exec_driver_sql(
        """INSERT INTO pending_checks (rule, subject_code, due_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ORDER BY 1, 2
           ON CONFLICT (rule, subject_code) DO NOTHING""",
        ([r for r, _ in unique], [c for _, c in unique], [due] * len(unique)),
    )


async def tick(conn: AsyncConnection, s: RuleSettings) -> list[str]:
    """Due checks and the sweeper, by one worker at a time; returns the alerts created or changed."""
    locked: list[Any] = list(await conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock($1)", (TICK_LOCK,)))
    if not locked or not locked[0][0]:
        return []
    due: list[Any] = list(
        await conn.exec_driver_sql(
            """DELETE FROM pending_checks WHERE (rule, subject_code) IN (
                   SELECT rule, subject_code FROM pending_checks WHERE due_at <= now()
                   ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED)
               RETURNING rule, data::text, subject_code"""
        )
    )
    checks = [orjson.loads(row[1]) for row in due if row[0] == RELEASE_CHECK]
    findings = rules.release_rules(await facts.release_facts(conn, checks), s)
    subjects: dict[str, list[str]] = {}
    for row in due:
        subjects.setdefault(row[0], []).append(row[2])
    if subjects.get(LOT_CHECK):
        lot_ids = await facts.lot_ids(conn, subjects[LOT_CHECK])
        findings += rules.mass_balance(await facts.lot_states(conn, lot_ids, {}, set()), s)
    if subjects.get(CERTIFICATE_CHECK):
        certs, claims = await facts.certificates(conn, subjects[CERTIFICATE_CHECK])
        findings += rules.certificate_head_counts(certs, claims)
    if subjects.get(VOUCHER_CHECK):
        findings += rules.shipment_mismatch(await facts.vouchers(conn, subjects[VOUCHER_CHECK]), s)
    if subjects.get(COLD_CHECK):
        cold_ids = await facts.lot_ids(conn, subjects[COLD_CHECK])
        findings += rules.cold_chain_break(await facts.cold_lots(conn, cold_ids, generations=0), s)
    if subjects.get(IMPORT_CHECK):
        findings += rules.import_docs_missing(
            await facts.imported_lots(conn, await facts.lot_ids(conn, subjects[IMPORT_CHECK]))
        )
    findings += rules.upstream_missing(await facts.unresolved_due(conn, s.grace_seconds), datetime.now(UTC), s)
    changed = await repo.write_findings(conn, findings)
    resolved = await facts.resolve_upstream_found(conn)
    await repo.publish(conn, resolved)
    return changed + resolved
