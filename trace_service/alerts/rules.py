"""The integrity rules of domain.md as pure functions from facts to findings. No I/O.

Each rule takes the facts the worker gathered for a batch (dataclasses below) and the thresholds, and
returns findings. Rules judge what is known *by occurred_at*, not by arrival: the worker gathers facts
whenever either side of a link arrives, so a rule sees the same facts whatever the arrival order.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from trace_service.alerts.models import Finding, Severity
from trace_service.chain.ownership import Refusal
from trace_service.chain.projection import IMPORT_CERTIFICATES
from trace_service.settings import RuleSettings

LOCAL = ZoneInfo("Asia/Shanghai")
W, C = Severity.WARNING, Severity.CRITICAL


def _ids(*groups: Any) -> tuple[uuid.UUID, ...]:
    out: set[uuid.UUID] = set()
    for g in groups:
        if isinstance(g, uuid.UUID):
            out.add(g)
        else:
            out.update(x for x in g if x is not None)
    return tuple(sorted(out, key=str))


def _t(moment: datetime | None) -> str | None:
    return moment.astimezone(LOCAL).isoformat() if moment else None


# -- facts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagUse:
    tag: str
    role: str  # dispatched | received
    lot: str
    event_id: uuid.UUID
    occurred_at: datetime
    operator: str


@dataclass(frozen=True)
class Certificate:
    number: str
    kind: str  # A | B | product
    head_count: int
    issued_at: datetime
    lot: str
    event_id: uuid.UUID


@dataclass(frozen=True)
class Claim:
    number: str
    batch: str
    head: int
    operator: str
    occurred_at: datetime
    event_id: uuid.UUID


@dataclass(frozen=True)
class Batch:
    """A slaughter batch as received and, when known, slaughtered and ASF-tested."""

    lot: str
    operator: str | None
    received_event: uuid.UUID | None
    origin_region: str | None
    head_received: int
    live_kg: Decimal
    slaughtered_event: uuid.UUID | None = None
    slaughtered_head: int | None = None
    condemned_head: int | None = None
    carcass_kg: float | None = None


@dataclass(frozen=True)
class AsfResult:
    method: str
    result: str
    occurred_at: datetime
    event_id: uuid.UUID


@dataclass(frozen=True)
class CarcassShipment:
    """A carcass (or cut) lot leaving its slaughterhouse, for the release rules."""

    batch: str
    carcass: str
    operator: str  # the slaughterhouse
    buyer: str | None
    buyer_province: str | None
    shipped_at: datetime
    event_id: uuid.UUID
    quality_cert_number: str | None
    asf: tuple[AsfResult, ...] = ()
    quality_passes: tuple[datetime, ...] = ()  # later meat-quality passes recorded as lot.tested


@dataclass(frozen=True)
class LotState:
    code: str
    kind: str | None
    category: str | None
    status: str
    holder: str | None
    kg_in: Decimal
    kg_out: Decimal
    created_at: datetime | None
    created_by_event: uuid.UUID | None
    documents: dict[str, Any] = field(default_factory=dict)
    slaughtered_at: datetime | None = None
    earliest_use: datetime | None = None  # the earliest event acting on the lot (facts, out-going trade)
    earliest_use_event: uuid.UUID | None = None
    kg_received_only: Decimal = Decimal(0)  # kg out on vouchers its holder never reported shipping


@dataclass(frozen=True)
class Outflow:
    """Quantity leaving a lot: a shipment line, a receipt from it, or a sale."""

    lot: str
    lot_status: str
    stopped_at: datetime | None
    kind: str  # shipped | received | sold
    occurred_at: datetime
    event_id: uuid.UUID
    operator: str


@dataclass(frozen=True)
class Voucher:
    key: str
    seller: str
    voucher_number: str
    shipped: dict[str, Decimal]  # buyer -> kg
    received: dict[str, Decimal]  # receiving operator -> kg
    event_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class Stop:
    """A positive ASF result or a failed test, with who holds stock downstream."""

    lot: str
    kind: str  # asf | test
    test: str | None
    value: float | None
    operator: str
    occurred_at: datetime
    event_id: uuid.UUID
    downstream_holders: tuple[str, ...]
    downstream_lots: int


# -- rules -------------------------------------------------------------------------------------------


def ear_tag_reused(uses: list[TagUse]) -> list[Finding]:
    """A tag consumed by two slaughters, or carried by two live-pig lots (two certificates)."""
    by_tag: dict[str, list[TagUse]] = defaultdict(list)
    for u in uses:
        by_tag[u.tag].append(u)
    offenders: dict[str, list[tuple[str, list[TagUse]]]] = defaultdict(list)
    for tag, tag_uses in by_tag.items():
        for role in ("dispatched", "received"):
            lots: dict[str, TagUse] = {}
            for u in sorted((u for u in tag_uses if u.role == role), key=lambda u: (u.occurred_at, str(u.event_id))):
                lots.setdefault(u.lot, u)
            if len(lots) > 1:
                first, *later = lots.values()
                for u in later:
                    offenders[u.lot].append((tag, [first, u]))
    findings = []
    for lot, items in offenders.items():
        tags = sorted({t for t, _ in items})
        uses_ = [u for _, pair in items for u in pair]
        earlier = sorted({p[0].lot for _, p in items})
        findings.append(
            Finding(
                "ear_tag_reused", "lot", lot, C,
                f"批次 {lot} 的 {len(tags)} 个耳标已在其他批次 {', '.join(earlier)} 使用（耳标不得重复使用）",
                f"{len(tags)} ear tag(s) of lot {lot} were already used by lot(s) {', '.join(earlier)}",
                operator=items[0][1][1].operator,
                evidence={"tags": tags[:100], "tag_count": len(tags), "earlier_lots": earlier},
                event_ids=_ids(u.event_id for u in uses_),
            )
        )  # fmt: skip
    return findings


def _claims_by_certificate(
    certs: list[Certificate], claims: list[Claim]
) -> Iterator[tuple[str, list[Claim], Certificate | None]]:
    """Each certificate number claimed, with its claims in the order given and its certificate (of a number issued
    twice, the last by issued_at), or None when no certificate of that number is known."""
    by_number: dict[str, list[Claim]] = defaultdict(list)
    for c in claims:
        by_number[c.number].append(c)
    cert_of = {c.number: c for c in sorted(certs, key=lambda c: (c.issued_at, str(c.event_id)))}
    for number, uses in by_number.items():
        yield number, uses, cert_of.get(number)


def certificate_rules(certs: list[Certificate], claims: list[Claim], s: RuleSettings) -> list[Finding]:
    """certificate_overused and certificate_expired."""
    findings: list[Finding] = []
    for number, uses, cert in _claims_by_certificate(certs, claims):
        heads = sum(u.head for u in uses)
        plants = sorted({u.operator for u in uses})
        ids = _ids([u.event_id for u in uses], [cert.event_id] if cert else [])
        # One intake that differs from its certificate is head_count_mismatch; overuse is several intakes
        # adding up to more than the certificate, or intakes at two slaughterhouses.
        over_heads = cert is not None and len(uses) > 1 and heads > cert.head_count
        if over_heads or len(plants) > 1:
            findings.append(
                Finding(
                    "certificate_overused", "certificate", number, C,
                    f"检疫证明 {number} 被重复使用：进厂 {heads} 头"
                    + (f"，证明载明 {cert.head_count} 头" if cert else "")
                    + (f"，涉及 {len(plants)} 家屠宰厂" if len(plants) > 1 else ""),
                    f"Quarantine certificate {number} used for {heads} head"
                    + (f" against {cert.head_count} on the certificate" if cert else "")
                    + (f" by {len(plants)} slaughterhouses" if len(plants) > 1 else ""),
                    operator=uses[-1].operator,
                    evidence={"certificate": number, "head_received": heads,
                              "head_on_certificate": cert.head_count if cert else None,
                              "slaughterhouses": plants, "batches": sorted({u.batch for u in uses})},
                    event_ids=ids,
                )
            )  # fmt: skip
        if cert is None:
            continue
        days = {"A": s.cert_valid_days_a, "B": s.cert_valid_days_b}.get(cert.kind, s.cert_valid_days_product)
        issued_day = cert.issued_at.astimezone(LOCAL).date()
        valid_until = datetime.combine(issued_day + timedelta(days=days + 1), datetime.min.time(), LOCAL)
        for u in uses:
            if u.occurred_at >= valid_until:
                findings.append(
                    Finding(
                        "certificate_expired", "lot", u.batch, W,
                        f"批次 {u.batch} 进厂时检疫证明 {number}（{cert.kind} 证）已过有效期",
                        f"Batch {u.batch} was received after certificate {number} (kind {cert.kind}) expired",
                        operator=u.operator,
                        evidence={"certificate": number, "kind": cert.kind, "issued_at": _t(cert.issued_at),
                                  "valid_until": _t(valid_until), "received_at": _t(u.occurred_at)},
                        event_ids=_ids([u.event_id, cert.event_id]),
                    )
                )  # fmt: skip
    return findings


def certificate_head_counts(certs: list[Certificate], claims: list[Claim]) -> list[Finding]:
    """The certificate half of head_count_mismatch: one intake whose heads differ from its certificate.

    A second intake on the same certificate would make it overuse instead, so this is judged after the
    settle delay (see the engine), not as soon as the first intake is seen.
    """
    findings: list[Finding] = []
    for number, uses, cert in _claims_by_certificate(certs, claims):
        if cert is None:
            continue
        plants = sorted({u.operator for u in uses})
        ids = _ids([u.event_id for u in uses], [cert.event_id])
        if len(uses) == 1 and len(plants) == 1 and uses[0].head != cert.head_count:
            u = uses[0]
            findings.append(
                Finding(
                    "head_count_mismatch", "lot", u.batch, W,
                    f"批次 {u.batch} 进厂 {u.head} 头（含途中死亡），与检疫证明 {number} 的 {cert.head_count} 头不符",
                    f"Batch {u.batch} received {u.head} head (incl. dead on arrival); certificate {number} "
                    f"says {cert.head_count}",
                    operator=u.operator,
                    evidence={"certificate": number, "received_incl_doa": u.head, "on_certificate": cert.head_count},
                    event_ids=ids,
                )
            )  # fmt: skip
    return findings


def batch_rules(batches: list[Batch], s: RuleSettings) -> list[Finding]:
    """origin_outside_zone, yield_out_of_range and the slaughter half of head_count_mismatch."""
    findings = []
    for b in batches:
        ids = _ids([b.received_event, b.slaughtered_event])
        if b.received_event and b.origin_region and b.origin_region[:2] not in s.zone_provinces:
            findings.append(
                Finding(
                    "origin_outside_zone", "lot", b.lot, C,
                    f"批次 {b.lot} 的生猪来自中南区以外的省份（产地 {b.origin_region}），不得调入屠宰",
                    f"Slaughter pigs of batch {b.lot} come from outside the ASF zone (origin {b.origin_region})",
                    operator=b.operator,
                    evidence={"origin_region": b.origin_region, "zone": s.zone_provinces},
                    event_ids=_ids([b.received_event]),
                )
            )  # fmt: skip
        if b.slaughtered_event is None or not b.received_event:
            continue
        killed = (b.slaughtered_head or 0) + (b.condemned_head or 0)
        if killed > b.head_received:
            findings.append(
                Finding(
                    "head_count_mismatch", "lot", b.lot, W,
                    f"批次 {b.lot} 屠宰 {b.slaughtered_head} 头、病害 {b.condemned_head} 头，"
                    f"超过进厂 {b.head_received} 头",
                    f"Batch {b.lot}: {b.slaughtered_head} slaughtered + {b.condemned_head} condemned exceed "
                    f"{b.head_received} received",
                    operator=b.operator,
                    evidence={"slaughtered": b.slaughtered_head, "condemned": b.condemned_head,
                              "received": b.head_received},
                    event_ids=ids,
                )
            )  # fmt: skip
        if b.carcass_kg and b.live_kg > 0 and b.head_received > 0 and b.slaughtered_head:
            live = float(b.live_kg) * min(1.0, b.slaughtered_head / b.head_received)
            ratio = b.carcass_kg / live
            if not s.yield_min <= ratio <= s.yield_max:
                findings.append(
                    Finding(
                        "yield_out_of_range", "lot", b.lot, W,
                        f"批次 {b.lot} 出肉率 {ratio:.1%}，超出 {s.yield_min:.0%}–{s.yield_max:.0%} 的正常范围",
                        f"Batch {b.lot} dressing yield {ratio:.1%} is outside {s.yield_min:.0%}-{s.yield_max:.0%}",
                        operator=b.operator,
                        evidence={"carcass_kg": b.carcass_kg, "live_kg": round(live, 3), "yield": round(ratio, 4)},
                        event_ids=ids,
                    )
                )  # fmt: skip
    return findings


def release_rules(shipments: list[CarcassShipment], s: RuleSettings) -> list[Finding]:
    """asf_not_released and quality_cert_missing, judged by occurred_at once late reports had time to come."""
    findings = []
    for sh in shipments:
        before = [a for a in sh.asf if a.occurred_at <= sh.shipped_at]
        if any(a.result == "positive" for a in before):
            pass  # asf_positive covers it, and stopped_lot_traded the shipment
        elif not any(a.result == "negative" for a in before):
            findings.append(
                Finding(
                    "asf_not_released", "lot", sh.batch, C,
                    f"批次 {sh.batch} 的产品 {sh.carcass} 在取得非洲猪瘟检测阴性结果前出厂",
                    f"Product {sh.carcass} of batch {sh.batch} was shipped without a negative ASF result",
                    operator=sh.operator,
                    evidence={"carcass": sh.carcass, "shipped_at": _t(sh.shipped_at), "buyer": sh.buyer},
                    event_ids=_ids([sh.event_id], [a.event_id for a in sh.asf]),
                )
            )  # fmt: skip
        elif (
            not any(a.result == "negative" and a.method == "pcr" for a in before)
            and sh.buyer_province is not None
            and sh.buyer_province != s.home_province
        ):
            findings.append(
                Finding(
                    "asf_not_released", "lot", sh.batch, C,
                    f"批次 {sh.batch} 仅有胶体金（试纸）阴性结果，其产品 {sh.carcass} 被调出省外",
                    f"Batch {sh.batch} has only a strip (antigen) negative, yet {sh.carcass} was shipped out of "
                    "the province",
                    operator=sh.operator,
                    evidence={"carcass": sh.carcass, "buyer": sh.buyer, "buyer_province": sh.buyer_province},
                    event_ids=_ids([sh.event_id], [a.event_id for a in sh.asf]),
                )
            )  # fmt: skip
        if not sh.quality_cert_number and not any(t <= sh.shipped_at for t in sh.quality_passes):
            findings.append(
                Finding(
                    "quality_cert_missing", "lot", sh.batch, C,
                    f"批次 {sh.batch} 的产品 {sh.carcass} 无肉品品质检验合格证出厂",
                    f"Product {sh.carcass} of batch {sh.batch} was shipped without a meat quality certificate",
                    operator=sh.operator,
                    evidence={"carcass": sh.carcass, "shipped_at": _t(sh.shipped_at)},
                    event_ids=_ids([sh.event_id]),
                )
            )  # fmt: skip
    return findings


def stop_rules(stops: list[Stop]) -> list[Finding]:
    """asf_positive and test_failed: the lot and everything made from it are stopped."""
    findings = []
    for st in stops:
        holders = list(st.downstream_holders)
        evidence = {"downstream_lots": st.downstream_lots, "downstream_holders": holders, "at": _t(st.occurred_at)}
        if st.kind == "asf":
            findings.append(
                Finding(
                    "asf_positive", "lot", st.lot, C,
                    f"批次 {st.lot} 非洲猪瘟检测阳性：该批次及其 {st.downstream_lots} 个下游批次已暂停，"
                    f"涉及 {len(holders)} 家经营者",
                    f"ASF positive in batch {st.lot}: it and {st.downstream_lots} downstream lot(s) are stopped; "
                    f"{len(holders)} holder(s) to notify",
                    operator=st.operator,
                    evidence=evidence,
                    event_ids=_ids([st.event_id]),
                )
            )  # fmt: skip
        else:
            findings.append(
                Finding(
                    "test_failed", "lot", st.lot, C,
                    f"批次 {st.lot} {st.test} 检测不合格"
                    + (f"（{st.value}）" if st.value is not None else "")
                    + f"：已暂停，涉及下游 {len(holders)} 家经营者",
                    f"Lot {st.lot} failed its {st.test} test"
                    + (f" ({st.value})" if st.value is not None else "")
                    + f": stopped; {len(holders)} downstream holder(s) to notify",
                    operator=st.operator,
                    evidence={**evidence, "test": st.test, "value": st.value},
                    event_ids=_ids([st.event_id]),
                )
            )  # fmt: skip
    return findings


def stopped_lot_traded(outflows: list[Outflow]) -> list[Finding]:
    by_lot: dict[str, list[Outflow]] = defaultdict(list)
    for o in outflows:
        if o.lot_status == "stopped" and o.stopped_at is not None and o.occurred_at >= o.stopped_at:
            by_lot[o.lot].append(o)
    findings = []
    for lot, items in by_lot.items():
        items.sort(key=lambda o: (o.occurred_at, str(o.event_id)))
        findings.append(
            Finding(
                "stopped_lot_traded", "lot", lot, C,
                f"已暂停的批次 {lot} 在暂停后仍被{'、'.join(sorted({_ZH[o.kind] for o in items}))}",
                f"Stopped lot {lot} was {', '.join(sorted({o.kind for o in items}))} after it was stopped",
                operator=items[-1].operator,
                evidence={"stopped_at": _t(items[0].stopped_at),
                          "trades": [{"kind": o.kind, "at": _t(o.occurred_at), "by": o.operator} for o in items][:50]},
                event_ids=_ids(o.event_id for o in items),
            )
        )  # fmt: skip
    return findings


_ZH = {"shipped": "出货", "received": "购进", "sold": "销售"}


def lot_rules(lots: list[LotState], s: RuleSettings) -> list[Finding]:
    """time_travel, compliance_cert_missing and shelf_life_exceeded on the lots a batch touched."""
    findings = []
    for lot in lots:
        if lot.status == "unresolved":
            continue
        ids = _ids([lot.created_by_event])
        if lot.created_at and lot.earliest_use and lot.earliest_use < lot.created_at:
            findings.append(
                Finding(
                    "time_travel", "lot", lot.code, W,
                    f"批次 {lot.code} 的业务记录时间（{_t(lot.earliest_use)}）早于其产生时间（{_t(lot.created_at)}）",
                    f"An event on lot {lot.code} is dated {_t(lot.earliest_use)}, before the lot was created "
                    f"({_t(lot.created_at)})",
                    operator=lot.holder,
                    evidence={"created_at": _t(lot.created_at), "earliest_use": _t(lot.earliest_use)},
                    event_ids=_ids([lot.created_by_event, lot.earliest_use_event]),
                )
            )  # fmt: skip
        if (
            lot.kind == "received"
            and lot.category == "produce"
            and not lot.documents.get("compliance_cert_number")
            and not lot.documents.get("origin_proof_number")
        ):
            findings.append(
                Finding(
                    "compliance_cert_missing", "lot", lot.code, W,
                    f"批次 {lot.code} 进货时无承诺达标合格证或产地证明",
                    f"Produce lot {lot.code} was received without a compliance certificate or proof of origin",
                    operator=lot.holder,
                    evidence={"seller": lot.documents.get("seller"), "voucher": lot.documents.get("voucher_number")},
                    event_ids=ids,
                )
            )  # fmt: skip
        if (
            lot.kind == "sale"
            and lot.category == "pork"
            and lot.slaughtered_at
            and lot.created_at
            and lot.created_at - lot.slaughtered_at > timedelta(days=s.chilled_shelf_life_days)
        ):
            days = (lot.created_at - lot.slaughtered_at).total_seconds() / 86400
            findings.append(
                Finding(
                    "shelf_life_exceeded", "lot", lot.code, W,
                    f"销售 {lot.code} 的猪肉屠宰已 {days:.1f} 天，超过冷鲜肉 {s.chilled_shelf_life_days} 天的销售期限",
                    f"Sale {lot.code}: pork slaughtered {days:.1f} days earlier, beyond the "
                    f"{s.chilled_shelf_life_days}-day limit for chilled pork",
                    operator=lot.holder,
                    evidence={"slaughtered_at": _t(lot.slaughtered_at), "sold_at": _t(lot.created_at),
                              "days": round(days, 2)},
                    event_ids=ids,
                )
            )  # fmt: skip
    return findings


def mass_balance(lots: list[LotState], s: RuleSettings) -> list[Finding]:
    """Kg out exceeds kg in beyond the tolerance, counting what the holder itself reported leaving the lot
    (sales, shipments, disposals, slaughter): a buyer's over-stated receipt is shipment_mismatch's."""
    findings = []
    for lot in lots:
        out = lot.kg_out - lot.kg_received_only
        if (
            lot.status != "unresolved"
            and lot.kind in ("received", "carcass", "produce", "imported")
            and lot.kg_in > 0
            and out > lot.kg_in * (1 + Decimal(str(s.mass_balance_tolerance)))
        ):
            findings.append(
                Finding(
                    "mass_balance", "lot", lot.code, W,
                    f"批次 {lot.code} 出货 {out} kg，超过进货 {lot.kg_in} kg",
                    f"Lot {lot.code}: {out} kg out exceeds {lot.kg_in} kg in",
                    operator=lot.holder,
                    evidence={"kg_in": float(lot.kg_in), "kg_out": float(out),
                              "tolerance": s.mass_balance_tolerance},
                    event_ids=_ids([lot.created_by_event]),
                )
            )  # fmt: skip
    return findings


def shipment_mismatch(vouchers: list[Voucher], s: RuleSettings) -> list[Finding]:
    findings = []
    for v in vouchers:
        if not v.shipped or not v.received:
            continue  # both sides are needed; a missing side is not this rule's business
        shipped = sum(v.shipped.values(), Decimal(0))
        received = sum(v.received.values(), Decimal(0))
        strangers = sorted(set(v.received) - set(v.shipped))
        over = received > shipped * (1 + Decimal(str(s.shipment_tolerance)))
        if over or strangers:
            findings.append(
                Finding(
                    "shipment_mismatch", "voucher", v.key, W,
                    f"交易凭证 {v.voucher_number}：" + (f"收货 {received} kg 超过发货 {shipped} kg" if over else "")
                    + ("；" if over and strangers else "")
                    + (f"收货方 {', '.join(strangers)} 不是凭证上的买方" if strangers else ""),
                    f"Voucher {v.voucher_number}: "
                    + (f"{received} kg received exceeds {shipped} kg shipped" if over else "")
                    + ("; " if over and strangers else "")
                    + (f"received by {', '.join(strangers)}, not the voucher's buyer" if strangers else ""),
                    operator=v.seller,
                    evidence={"shipped_kg": float(shipped), "received_kg": float(received),
                              "buyers": sorted(v.shipped), "receivers": sorted(v.received)},
                    event_ids=v.event_ids,
                )
            )  # fmt: skip
    return findings


def upstream_missing(
    unresolved: list[tuple[str, datetime, str | None]], now: datetime, s: RuleSettings
) -> list[Finding]:
    """Lots referenced but never created, once the grace period is over: (code, first seen, referrer)."""
    findings = []
    for code, first_seen, referrer in unresolved:
        if now - first_seen >= timedelta(seconds=s.grace_seconds):
            findings.append(
                Finding(
                    "upstream_missing", "lot", code, W,
                    f"批次 {code} 被下游引用，但上游至今未上报该批次的来源记录",
                    f"Lot {code} is referenced downstream but its upstream record never arrived",
                    operator=referrer,
                    evidence={"first_seen": _t(first_seen), "grace_seconds": s.grace_seconds},
                )
            )  # fmt: skip
    return findings


def conflicting_duplicates(dups: list[tuple[uuid.UUID, str | None, str, int, int]]) -> list[Finding]:
    """Event ids re-sent with other content on the Kafka path: (event id, operator, topic, partition, offset)."""
    return [
        Finding(
            "conflicting_duplicate", "event", str(event_id), W,
            f"事件 {event_id} 以不同内容重复上报，后到的版本已进入死信",
            f"Event {event_id} was re-sent with different content; the later copy is a dead letter",
            operator=operator,
            evidence={"topic": topic, "partition": partition, "offset": offset},
            event_ids=(event_id,),
        )
        for event_id, operator, topic, partition, offset in dups
    ]  # fmt: skip


def not_holder(event: Any, refusal: Refusal) -> Finding:
    """An operator's event about a lot another operator holds, or creating a code another holds (section 7)."""
    sender: str = event.operator
    et: str = event.event_type
    if refusal.code == "lot_taken":
        zh = f"{sender} 试图以 {et} 创建批次 {refusal.lot}，但该批次码属于 {refusal.holder}，事件已拒收"
        en = (
            f"{sender} tried to create lot {refusal.lot} ({et}), a code held by {refusal.holder}; the event was refused"
        )
    else:
        zh = f"{sender} 试图以 {et} 更改 {refusal.holder} 持有的批次 {refusal.lot}，事件已拒收"
        en = f"{sender} tried to change lot {refusal.lot} held by {refusal.holder} ({et}); the event was refused"
    return Finding(
        "not_holder", "lot", refusal.lot, W, zh, en,
        operator=sender,
        evidence={
            "operator": sender, "holder": refusal.holder, "event_type": et, "field": refusal.field,
            "reason": refusal.code, "event_id": str(event.event_id),
        },
        event_ids=(event.event_id,),
    )  # fmt: skip


# -- cold chain: imported meat and temperatures (issue 14) -------------------------------------------


@dataclass(frozen=True)
class Reading:
    at: datetime
    celsius: Decimal
    event_id: uuid.UUID


@dataclass(frozen=True)
class ColdLot:
    """A frozen lot with readings: ``frozen_by`` is the lot (itself or an ancestor) stored frozen."""

    lot: str
    holder: str | None
    frozen_by: str
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class Excursion:
    """Readings above the limit, from the first above to the first later one at or below it (included),
    or to the last one above when the readings never came back."""

    start: datetime
    end: datetime
    peak: Decimal
    readings: tuple[Reading, ...]

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def excursions(readings: Iterable[Reading], max_c: float) -> list[Excursion]:
    """The excursions of a lot's readings above ``max_c``, in time order (ties by event id)."""
    limit = Decimal(str(max_c))
    out: list[Excursion] = []
    above: list[Reading] = []
    for reading in sorted(readings, key=lambda x: (x.at, str(x.event_id))):
        if reading.celsius > limit:
            above.append(reading)
        elif above:
            out.append(Excursion(above[0].at, reading.at, max(x.celsius for x in above), (*above, reading)))
            above = []
    if above:
        out.append(Excursion(above[0].at, above[-1].at, max(x.celsius for x in above), tuple(above)))
    return out


def cold_chain_break(lots: list[ColdLot], s: RuleSettings) -> list[Finding]:
    """A frozen lot above the limit for longer than allowed in one excursion (two short ones do not add up)."""
    allowed = timedelta(minutes=s.cold_chain_max_minutes)
    findings = []
    for lot in lots:
        breaks = [e for e in excursions(lot.readings, s.cold_chain_max_c) if e.duration > allowed]
        if not breaks:
            continue
        worst = max(breaks, key=lambda e: (e.duration, e.peak))
        minutes = round(worst.duration.total_seconds() / 60, 1)
        findings.append(
            Finding(
                "cold_chain_break", "lot", lot.lot, C,
                f"冷冻批次 {lot.lot} 温度高于 {s.cold_chain_max_c:g} °C 持续 {minutes:g} 分钟"
                f"（最高 {worst.peak:f} °C），超过 {s.cold_chain_max_minutes} 分钟的限度，冷链中断",
                f"Frozen lot {lot.lot} was above {s.cold_chain_max_c:g} °C for {minutes:g} minutes "
                f"(peak {worst.peak:f} °C), beyond the {s.cold_chain_max_minutes}-minute limit: the cold chain broke",
                operator=lot.holder,
                evidence={"minutes": minutes, "peak": float(worst.peak), "from": _t(worst.start), "to": _t(worst.end),
                          "excursions": len(breaks), "max_c": s.cold_chain_max_c,
                          "max_minutes": s.cold_chain_max_minutes, "frozen_lot": lot.frozen_by},
                event_ids=_ids(r.event_id for e in breaks for r in e.readings),
            )
        )  # fmt: skip
    return findings


# IMPORT_CERTIFICATES: the certificates an imported lot must have before it, or anything made from it, is
# shipped or sold (the customs declaration is required by the contract itself).
_CERT_ZH = {"inspection_cert_number": "入境货物检验检疫证明", "disinfection_cert_number": "消毒证明"}
_CERT_EN = {
    "inspection_cert_number": "inspection and quarantine certificate",
    "disinfection_cert_number": "disinfection certificate",
}


@dataclass(frozen=True)
class Supplied:
    """Certificates an import.documents_supplied (or an EPCIS event) added to an imported lot."""

    occurred_at: datetime
    event_id: uuid.UUID
    documents: dict[str, Any]


@dataclass(frozen=True)
class ImportOutflow:
    lot: str  # the imported lot or one made from it
    kind: str  # shipped | sold
    occurred_at: datetime
    event_id: uuid.UUID
    operator: str | None


@dataclass(frozen=True)
class ImportedLot:
    lot: str
    holder: str | None
    created_by_event: uuid.UUID | None
    documents: dict[str, Any]
    supplied: tuple[Supplied, ...] = ()
    outflows: tuple[ImportOutflow, ...] = ()


def import_docs_missing(lots: list[ImportedLot]) -> list[Finding]:
    """An imported lot, or one made from it, shipped or sold at a time its import lot lacked a certificate.

    The customs entry's certificates count from the start; a supplied one from its occurred_at. A certificate
    supplied after the trade does not undo the finding (a regulator resolves it).
    """
    findings = []
    for lot in lots:
        at_entry = {k for k in IMPORT_CERTIFICATES if lot.documents.get(k)}
        late: list[tuple[ImportOutflow, list[str]]] = []
        for out in sorted(lot.outflows, key=lambda o: (o.occurred_at, str(o.event_id))):
            have = at_entry | {
                k
                for sup in lot.supplied
                if sup.occurred_at <= out.occurred_at
                for k in sup.documents
                if sup.documents[k]
            }
            missing = [k for k in IMPORT_CERTIFICATES if k not in have]
            if missing:
                late.append((out, missing))
        if not late:
            continue
        first, missing = late[0]
        findings.append(
            Finding(
                "import_docs_missing", "lot", lot.lot, W,
                f"进口批次 {lot.lot} 缺少{'、'.join(_CERT_ZH[k] for k in missing)}，"
                f"其货物（{first.lot}）已于 {_t(first.occurred_at)} {'销售' if first.kind == 'sold' else '出货'}",
                f"Imported lot {lot.lot} lacked its {' and '.join(_CERT_EN[k] for k in missing)} when "
                f"{first.lot} was {first.kind} at {_t(first.occurred_at)}",
                operator=lot.holder,
                evidence={"missing": missing,
                          "trades": [{"lot": o.lot, "kind": o.kind, "at": _t(o.occurred_at), "by": o.operator,
                                      "missing": m} for o, m in late][:50]},
                event_ids=_ids([lot.created_by_event], [o.event_id for o, _ in late]),
            )
        )  # fmt: skip
    return findings
