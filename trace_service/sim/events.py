"""Days of chain events in a simulated city, with injected faults and a ground truth. Pure: no I/O.

``simulate(city, days=N, end=day, anomalies=rate)`` realises the city's standing trade on each of the N
days ending on ``end`` (default: yesterday, so that every event lies in the past): trucks of pigs from the
farms are received, ASF-tested and slaughtered before dawn, carcass lots go to the pork wholesalers and
supermarkets, vegetables harvested the afternoon before reach the wholesale markets around midnight, the
wholesalers sell to stalls, supermarkets and canteens from 03:00, and the stalls and supermarkets print
traced sales from 06:00. The same seed, scale, span and rate give the same events, byte for byte.

**Faults.** With ``anomalies > 0`` every integrity rule of ``docs/alerts.md`` is injected at least once,
and ``anomalies`` x the number of chains (pig batches and harvest lots) in all. Each fault is modelled on
its faulty twin in ``events/scenarios/faults/`` and changes one chain, or adds one, so that exactly its
rule fires about exactly its subject and nothing else does; :class:`Truth` records each one. The last day
also carries a **supply shock**: one vegetable's receipts at one wholesale market cut by 60 %
(``supply_drop``; the market monitor judges it only with two same-weekday weeks of history, so it is
``detectable`` from 15 days on). The stalls downstream do not go short: wholesalers sell only part of what
they receive to traced buyers (``city.TRACED_SHARE_VEG``).

**Market shocks.** On the days before it, as far as they have two weeks of history (from 16 days on), one
each: a glut (another vegetable at a wholesale market, 2.5 times its receipts: ``supply_surge``), a price
spike (one vegetable 60 % dearer at the stalls of one wet market: ``price_spike`` level III), a stock-out
(one vegetable delivered to none of three sample sites, so none sells it: ``stock_out``, and a
``supply_drop`` at each site), and a **late upload**: a wet market offline from 02:00 to the end of a day,
whose records of that day reach the service only after everything else (``Simulation.late``; the runner
holds them back when asked). Its shortfall while they are missing is not an alert that may remain: the
truth lists it with ``kind: late_upload``. Each shock lies in the last week, so that no later simulated
day has it in its baseline.

**Imports.** Every day the importers clear ``city.scale.import_lots`` x ``imports`` lots of frozen pork or
beef at a port (``import.customs_cleared``), one to three days before: into their cold store
(``coldstore.stored_in``), a temperature reading every ``reading_minutes`` (``lot.temperature_recorded``,
twelve readings an event), out of it before dawn (``coldstore.released``), shipped to a frozen-meat
wholesaler at a wholesale market, part of it on to supermarkets, and sold there. About a third of the lots
get their disinfection certificate after clearance (``import.documents_supplied``, before release). The
faults ``cold_chain_break`` (a cold store's readings above −15 °C for 1½ to 3 hours) and
``import_docs_missing`` (a certificate missing when the meat is traded) each go into an import lot of
their own. Imports are drawn from generators of their own, so the rest of the city's events do not change
with ``imports``.

``conflicting_duplicate`` needs a copy of an event with other content sent straight to Kafka (the API
answers such a copy with 409 and raises nothing): those copies are in ``Simulation.conflicts``, and their
truth entries say ``needs: kafka``.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from trace_service.sim.city import (
    ENTRY_PORTS,
    IMPORTED,
    PLATES,
    PORK,
    PRODUCTS,
    City,
    Farm,
    ImportFlow,
    Order,
    Product,
    Supply,
)

TZ = timezone(timedelta(hours=8))  # Asia/Shanghai has no daylight saving time
STALE_DAYS = 9  # the shelf-life fault sells pork slaughtered this many days before
MAX_NORMAL_PIGS = 80  # pig numbers 1..80 of a farm and day are its normal truck; 81..99 extra trucks
SHOCK_FACTOR = 0.4  # the supply shock leaves 40 % of the receipts
SHOCK_DETECTABLE_DAYS = 15  # a same-weekday baseline needs two earlier weeks
SURGE_FACTOR = 2.5  # the glut: 150 % above the baseline (supply_surge fires from 100 %)
PRICE_FACTOR = 1.6  # the price spike: 60 % dearer, level III (50 % .. 70 %)
STOCK_OUT_SITES = 3  # the stock-out: sample sites without the product (TRACE_MARKET_STOCK_OUT_SITES)
LATE_FROM = 2.0  # the late upload: the market is offline from 02:00 until the end of its day

PIG_RULES = (
    "certificate_expired",
    "origin_outside_zone",
    "asf_not_released",
    "quality_cert_missing",
    "yield_out_of_range",
    "head_count_mismatch",
    "ear_tag_reused",
    "certificate_overused",
    "asf_positive",
    "shelf_life_exceeded",
)
PRODUCE_RULES = (
    "mass_balance",
    "shipment_mismatch",
    "upstream_missing",
    "time_travel",
    "stopped_lot_traded",
    "test_failed",
    "compliance_cert_missing",
    "conflicting_duplicate",
)
IMPORT_RULES = ("cold_chain_break", "import_docs_missing")
RULES = PIG_RULES + PRODUCE_RULES + IMPORT_RULES
READING_MINUTES = 30  # a cold store's temperature logger, by default
READINGS_PER_EVENT = 12
FROZEN_C = -18.0  # a cold store's set point; readings stay at or below -16.2 °C unless a fault breaks them
SURNAMES = "陈李黄张梁何吴林郑刘罗冯谭杨"
SALE_HOURS = {6: 3, 7: 8, 8: 9, 9: 8, 10: 6, 11: 5, 12: 3, 13: 2, 14: 2, 15: 3, 16: 5, 17: 7, 18: 6, 19: 3}


@dataclass(frozen=True)
class Truth:
    """One injected fault: the alert it must raise (rule and subject) and the lots it involves."""

    rule: str
    subject_type: str
    subject_code: str
    note: str
    day: str
    lots: tuple[str, ...] = ()  # codes that must exist in the graph
    unresolved: tuple[str, ...] = ()  # codes deliberately never created
    kind: str = "integrity"  # integrity | market | late_upload
    needs: str | None = None  # "kafka": raised only when the conflicting copy goes straight to Kafka
    detectable: bool = True
    level: str | None = None  # market shocks: the level the alert must have

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "subject_type": self.subject_type,
            "subject_code": self.subject_code,
            "note": self.note,
            "day": self.day,
            "kind": self.kind,
            "detectable": self.detectable,
        }
        if self.lots:
            out["lots"] = list(self.lots)
        if self.unresolved:
            out["unresolved"] = list(self.unresolved)
        if self.needs:
            out["needs"] = self.needs
        if self.level:
            out["level"] = self.level
        return out


@dataclass(frozen=True)
class Shock:
    """A market shock of one day: ``drop``/``surge`` (a wholesale market's receipts of a vegetable times
    ``factor``), ``price`` (a wet market's retail prices of a vegetable times ``factor``), ``stock_out``
    (a vegetable delivered to none of ``sites``) or ``late`` (``market`` uploads its day late)."""

    kind: str
    day: date
    market: str = ""
    product: str = ""
    factor: float = 1.0
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class LateUpload:
    """A market offline from ``since`` until ``until``: the events it posts (its own and its tenants') that
    happened meanwhile reach the service only after everything else."""

    market: str
    since: datetime
    until: datetime

    def holds(self, event: dict[str, Any], poster: str | None) -> bool:
        return poster == self.market and self.since <= datetime.fromisoformat(event["occurred_at"]) < self.until


@dataclass
class Simulation:
    city: City
    first_day: date
    last_day: date
    anomalies: float
    events: list[dict[str, Any]]  # sorted by occurred_at
    conflicts: list[dict[str, Any]]  # copies of events with other content, for Kafka only
    truth: list[Truth]
    skipped: list[str] = field(default_factory=list)  # faults that found no chain to go into
    late: list[LateUpload] = field(default_factory=list)

    def late_ids(self) -> set[str]:
        """The events of the late uploads (they are in ``events`` too, at their time)."""
        if not self.late:
            return set()
        return {
            e["event_id"] for e in self.events if any(up.holds(e, self.city.poster(e["operator"])) for up in self.late)
        }

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def stats(self) -> dict[str, Any]:
        types = Counter(e["event_type"] for e in self.events)
        imported = [e["data"]["weight_kg"] for e in self.events if e["event_type"] == "import.customs_cleared"]
        ops = self.city.by_code
        hours = Counter(int(e["occurred_at"][11:13]) for e in self.events)
        heads = sum(e["data"]["head_count"] for e in self.events if e["event_type"] == "slaughter.batch_slaughtered")
        veg = sum(
            line["weight_kg"]
            for e in self.events
            if e["event_type"] == "trade.received" and ops[e["operator"]].kind == "wholesaler"
            for line in e["data"]["lines"]
            if line.get("product_code", "").startswith("VEG-")
        )
        return {
            "events": len(self.events),
            "events_per_day": round(len(self.events) / self.days),
            "by_type": dict(sorted(types.items())),
            "by_hour": {h: hours.get(h, 0) for h in range(24)},
            "peak_hour": max(range(24), key=lambda h: hours.get(h, 0)),
            "pigs_slaughtered_per_day": round(heads / self.days),
            "veg_tonnes_per_day": round(veg / 1000 / self.days, 1),
            "faults": len([t for t in self.truth if t.kind == "integrity"]),
            "import_lots": len(imported),
            "imported_tonnes_per_day": round(sum(imported) / 1000 / self.days, 1),
        }

    def truth_json(self) -> dict[str, Any]:
        return {
            "seed": self.city.seed,
            "scale": self.city.scale.name,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "days": self.days,
            "anomalies": self.anomalies,
            "events": len(self.events),
            "conflicts": len(self.conflicts),
            "skipped": self.skipped,
            "truth": [t.as_json() for t in self.truth],
        }


# -- the things of a day, before they become events ------------------------------------------------------


@dataclass
class Lot:
    code: str
    holder: str
    product: Product
    kg: float
    at: datetime  # created
    docs: dict[str, str] = field(default_factory=dict)  # certificates its buyers receive with it
    left: float = 0.0  # kg still free for traced buyers


@dataclass
class Line:
    src: Lot
    dst: Lot
    kg: float
    price: float  # CNY/kg on the voucher


@dataclass
class Delivery:
    """One voucher: the seller's ``trade.shipped`` and the buyer's ``trade.received``."""

    seller: str
    buyer: str
    voucher: str
    shipped_at: datetime
    received_at: datetime
    lines: list[Line]
    receipt_docs: dict[str, str] | None = None  # None: the first source lot's documents
    received_factor: float = 1.0  # > 1: the buyer records more than the voucher says
    bogus_from: str | None = None  # the receipt names a lot that never existed
    shipped_event: dict[str, Any] | None = None


@dataclass
class Batch:
    """A truck of pigs from one farm on one certificate, and the slaughter batch it becomes."""

    farm: Farm
    plant: str
    head: int  # on the certificate
    tags: list[str]
    cert: str
    cert_kind: str
    cert_issued: datetime
    farm_lot: str
    lot: str
    dispatched_at: datetime
    received_at: datetime
    weights: list[float]  # live kg of each pig on the certificate
    plate: str
    owner: str
    from_lot: bool
    doa: int = 0
    extra_doa: int = 0  # head_count_mismatch: a dead pig on top of the certificate's
    condemned: int = 0
    recorded_live_kg: float | None = None  # yield_out_of_range: the entry check records too little
    asf_method: str = "pcr"
    asf_result: str = "negative"
    asf_reported: bool = True
    sampled_at: datetime | None = None
    asf_at: datetime | None = None
    report: str = ""
    slaughtered_at: datetime | None = None
    quality_cert: str | None = None
    product_cert: str = ""
    outputs: list[Lot] = field(default_factory=list)
    disposed_at: datetime | None = None
    dispatch: bool = True  # False: an intake on another truck's certificate (no dispatch of its own)

    @property
    def received_head(self) -> int:
        return self.head - self.doa

    @property
    def live_kg(self) -> float:
        return round(sum(self.weights[: self.received_head]), 1)

    @property
    def slaughtered(self) -> int:
        return self.received_head - self.condemned


@dataclass
class Harvest:
    base: str
    lot: Lot
    harvested_at: datetime
    at: datetime
    cert: str
    region: str


@dataclass
class Sale:
    code: str
    lot: Lot
    seller: str
    stall: str | None
    at: datetime
    kg: float
    price: float


@dataclass
class Import:
    """An imported lot from the port through a cold store to a frozen-meat wholesaler, and what it lacks or
    suffers when a fault goes into it."""

    importer: str
    store: str
    wholesaler: str
    lot: Lot
    origin: str
    port: str
    declaration: str
    inspection: str | None
    disinfection: str | None
    cleared_at: datetime
    stored_at: datetime
    released_at: datetime
    readings: list[tuple[datetime, float]]
    supplied_at: datetime | None = None  # the certificates missing at clearance are supplied then
    supplied: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)  # to the wholesaler, then on to supermarkets
    faulty: bool = False


@dataclass
class Fact:
    """lot.tested, lot.disposed, regulator.lot_held: one event about one lot."""

    event_type: str
    operator: str
    at: datetime
    data: dict[str, Any]


# -- the run -----------------------------------------------------------------------------------------


def default_end(now: datetime | None = None) -> date:
    """Yesterday in the city: every event of a simulated day then lies in the past."""
    return (now or datetime.now(TZ)).astimezone(TZ).date() - timedelta(days=1)


def simulate(
    city: City,
    *,
    days: int = 1,
    end: date | None = None,
    anomalies: float = 0.0,
    imports: float = 1.0,
    reading_minutes: int = READING_MINUTES,
) -> Simulation:
    """The events of ``days`` days ending on ``end``, with faults at the rate ``anomalies``; ``imports`` scales
    the imported lots of a day (0: none but the import faults' own), read every ``reading_minutes``."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if not 0 <= anomalies <= 1:
        raise ValueError("anomalies is a rate between 0 and 1")
    if not 0 <= imports <= 100:
        raise ValueError("imports is a factor between 0 and 100")
    if not 1 <= reading_minutes <= 240:
        raise ValueError("reading_minutes is between 1 and 240")
    last = end or default_end()
    first = last - timedelta(days=days - 1)
    run = _Run(city, first, last, anomalies, imports, reading_minutes)
    for i in range(days):
        run.day(first + timedelta(days=i))
    run.events.sort(key=lambda item: (item[0], item[1]))
    return Simulation(
        city=city,
        first_day=first,
        last_day=last,
        anomalies=anomalies,
        events=[e for _, _, e in run.events],
        conflicts=run.conflicts,
        truth=run.truth,
        skipped=run.skipped,
        late=run.late,
    )


def _at(day: date, hour: float) -> datetime:
    """``hour`` hours after midnight of ``day`` (may be negative or past 24), to the second."""
    base = datetime.combine(day, time(0), TZ)
    return base + timedelta(seconds=round(hour * 3600))


def _iso(moment: datetime) -> str:
    return moment.astimezone(TZ).isoformat()


def _kg(value: float) -> float:
    return round(value, 1)


class _Run:
    def __init__(
        self, city: City, first: date, last: date, anomalies: float, imports: float, reading_minutes: int
    ) -> None:
        self.city = city
        self.first = first
        self.last = last
        self.anomalies = anomalies
        self.imports = imports
        self.reading_minutes = reading_minutes
        self.ops = city.by_code
        self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"trace-service/sim/{city.seed}/{city.scale.name}/{city.tag}")
        self.events: list[tuple[datetime, int, dict[str, Any]]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.truth: list[Truth] = []
        self.skipped: list[str] = []
        self.extra_pigs: dict[tuple[str, int], int] = {}  # (farm code, day number) -> last extra pig number
        self.plan = self._plan()
        self.late: list[LateUpload] = []
        self.shocks = self._plan_shocks()

    def _plan(self) -> dict[date, list[str]]:
        """Which faults go into which day: every rule once, then more in a shuffled rotation."""
        days = (self.last - self.first).days + 1
        plan: dict[date, list[str]] = {self.first + timedelta(days=i): [] for i in range(days)}
        if self.anomalies <= 0:
            return plan
        seed = f"trace-service/sim/faults/{self.city.seed}/{self.city.scale.name}/{self.first}/{days}"
        rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        veg_lots = sum(len(s.bases) for s in self.city.supplies)
        import_lots = round(self.city.scale.import_lots * self.imports) if self.city.importers else 0
        chains = days * (len(self.city.farms) + veg_lots + import_lots)
        total = max(len(RULES), round(self.anomalies * chains))
        rotation = list(RULES)
        rng.shuffle(rotation)
        kinds = list(RULES) + [rotation[i % len(rotation)] for i in range(total - len(RULES))]
        for i, kind in enumerate(kinds):
            # The first round is spread over the days in turn, the rest at random.
            day = self.first + timedelta(days=i % days if i < len(RULES) else rng.randrange(days))
            plan[day].append(kind)
        return plan

    def _plan_shocks(self) -> dict[date, Shock]:
        """The market shocks by day: the drop on the last day, the others on the days before it that have two
        weeks of history (and only where the city has what they need)."""
        if self.anomalies <= 0:
            return {}
        city = self.city
        totals: dict[tuple[str, str], float] = {}
        for s in city.supplies:
            totals[(s.market, s.product)] = totals.get((s.market, s.product), 0.0) + s.kg
        if not totals:
            return {}
        ranked = sorted(totals, key=lambda k: (totals[k], k), reverse=True)
        shocks = {self.last: Shock("drop", self.last, *ranked[0], SHOCK_FACTOR)}

        def add(shock: Shock) -> None:
            if (shock.day - self.first).days >= SHOCK_DETECTABLE_DAYS - 1:
                shocks[shock.day] = shock

        day = self.last - timedelta(days=1)
        if len(ranked) > 1:
            add(Shock("surge", day, *ranked[1], SURGE_FACTOR))
        # Where each vegetable is sold: the wet markets of the stalls that order it, and the supermarkets.
        ops = city.by_code
        sellers: dict[str, dict[str, int]] = {}
        for o in city.orders:
            kind = ops[o.buyer].kind
            if o.product != PORK.code and kind in ("retailer", "supermarket"):
                site = ops[o.buyer].parent or o.buyer
                sellers.setdefault(o.product, {})
                sellers[o.product][site] = sellers[o.product].get(site, 0) + 1
        wet = set(city.wet_markets)
        stalls = sorted(((n, m, p) for p, sites in sellers.items() for m, n in sites.items() if m in wet), reverse=True)
        used: set[str] = set()
        if stalls:
            _, market, product = stalls[0]
            used.add(market)
            add(Shock("price", day - timedelta(days=1), market, product, PRICE_FACTOR))
        widest = sorted(sellers, key=lambda p: (len(sellers[p]), p), reverse=True)
        if widest and len(sellers[widest[0]]) >= STOCK_OUT_SITES:
            product = widest[0]
            sites = tuple(sorted(sellers[product])[:STOCK_OUT_SITES])
            used.update(sites)
            add(Shock("stock_out", day - timedelta(days=2), product=product, sites=sites))
        quiet = [m for m in city.wet_markets if m not in used]
        if quiet:
            add(Shock("late", day - timedelta(days=3), quiet[0]))
        return shocks

    def day(self, day: date) -> None:
        _Day(self, day).build()

    def extra_tags(self, farm: Farm, day: date, count: int) -> list[str] | None:
        """Ear tags for a truck beyond the farm's normal one that day (pig numbers 81..99; 1..99 for a farm
        without normal trucks)."""
        key = (farm.farm_code, _day_number(day))
        start = self.extra_pigs.get(key, MAX_NORMAL_PIGS if farm.in_zone else 0)
        if start + count > 99:
            return None
        self.extra_pigs[key] = start + count
        return [_tag(farm, day, n) for n in range(start + 1, start + count + 1)]


def _day_number(day: date) -> int:
    return (day - date(2000, 1, 1)).days % 10_000


def _tag(farm: Farm, day: date, n: int) -> str:
    """``1`` + region + farm slot (2) + day number (4) + pig number (2): unique per farm and day."""
    return f"1{farm.region}{farm.slot % 100:02d}{_day_number(day):04d}{n:02d}"


class _Day:
    def __init__(self, run: _Run, day: date) -> None:
        self.run = run
        self.city = run.city
        self.day = day
        self.stamp = day.strftime("%y%m%d")
        seed = f"trace-service/sim/day/{self.city.seed}/{self.city.scale.name}/{day.isoformat()}"
        self.rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        self.counters: Counter[str] = Counter()
        self.batches: list[Batch] = []
        self.harvests: list[Harvest] = []
        self.deliveries: list[Delivery] = []
        self.sales: list[Sale] = []
        self.facts: list[Fact] = []
        self.lots_of: dict[str, list[Lot]] = {}  # (holder) -> its lots of the day
        self.used: set[int] = set()  # ids of the chains a fault already went into
        self.shock: tuple[str, str] | None = None  # the wholesale market and vegetable of a drop or a glut
        self.market_shock = run.shocks.get(day)
        self.emitted = 0
        # Imports draw from a generator of their own: the rest of the day is the same with or without them.
        self.irng = random.Random(f"trace-service/sim/imports/{self.city.seed}/{self.city.scale.name}/{day}")  # noqa: S311
        self.imports: list[Import] = []
        self.import_sales: list[Sale] = []

    # -- codes ------------------------------------------------------------------------------------

    def serial(self, name: str) -> int:
        self.counters[name] += 1
        return self.counters[name]

    def code(self, prefix: str) -> str:
        """A lot code: prefix, seed tag, day, serial; letters in it keep it out of the issued-code form."""
        return f"{prefix}{self.city.tag}{self.stamp}{self.serial(prefix):06d}"

    def number(self, prefix: str) -> str:
        return f"{prefix}-{self.city.tag}{self.stamp}-{self.serial(prefix):05d}"

    def voucher(self, seller: str) -> str:
        return f"{seller[-6:]}-{self.city.tag}{self.stamp}-{self.serial('V'):05d}"

    def hours(self, lo: float, hi: float) -> datetime:
        return _at(self.day, self.rng.uniform(lo, hi))

    def minutes(self, moment: datetime, lo: float, hi: float) -> datetime:
        return moment + timedelta(seconds=round(self.rng.uniform(lo, hi) * 60))

    # -- building ---------------------------------------------------------------------------------

    def build(self) -> None:
        if self.market_shock and self.market_shock.kind in ("drop", "surge"):
            self.shock = (self.market_shock.market, self.market_shock.product)
        for farm in self.city.farms:
            pigs = max(1, min(MAX_NORMAL_PIGS, round(farm.pigs_per_day * self.rng.uniform(0.88, 1.12))))
            tags = [_tag(farm, self.day, n) for n in range(1, pigs + 1)]
            self.batches.append(self.truck(farm, farm.slaughterhouse, tags, self.day))
        for b in self.batches:
            self.rng_batch_details(b)
        self.slaughter_all()
        self.veg_supply()
        self.wholesale_orders()
        self.retail()
        self.import_all()
        for rule in self.run.plan.get(self.day, []):
            found = self.fault(rule)
            if found is None:
                self.run.skipped.append(f"{rule} on {self.day}: no chain to put it in")
            else:
                self.run.truth.append(found)
        if self.market_shock:
            self.run.truth += self.shock_truth(self.market_shock)
            if self.market_shock.kind == "late":
                until = _at(self.day + timedelta(days=1), 0)
                self.run.late.append(LateUpload(self.market_shock.market, _at(self.day, LATE_FROM), until))
        self.emit_all()

    def shock_truth(self, shock: Shock) -> list[Truth]:
        """What a market shock must raise (and the late upload: what must not remain)."""
        day = self.day.isoformat()
        name = PRODUCTS[shock.product].name if shock.product else ""
        where = self.city.by_code[shock.market].name if shock.market else ""
        detectable = (self.day - self.run.first).days >= SHOCK_DETECTABLE_DAYS - 1
        cell = f"{shock.market}/{shock.product}/{day}"
        if shock.kind == "drop":
            note = f"{name} receipts at {where} cut to {shock.factor:.0%} on {self.day}"
            return [Truth("supply_drop", "market", cell, note, day, kind="market", detectable=detectable, level="III")]
        if shock.kind == "surge":
            note = f"{name} receipts at {where} {shock.factor:g} times the usual on {self.day}"
            return [Truth("supply_surge", "market", cell, note, day, kind="market", detectable=detectable, level="IV")]
        if shock.kind == "price":
            note = f"{name} {shock.factor - 1:.0%} dearer at the stalls of {where} on {self.day}"
            return [Truth("price_spike", "market", cell, note, day, kind="market", detectable=detectable, level="III")]
        if shock.kind == "stock_out":
            names = ", ".join(shock.sites)
            found = [
                Truth(
                    "stock_out",
                    "market",
                    f"city/{shock.product}/{day}",
                    f"{name} delivered to none of {names} on {self.day}",
                    day,
                    kind="market",
                    detectable=detectable,
                    level="III",
                )
            ]
            return found + [
                Truth(
                    "supply_drop",
                    "market",
                    f"{site}/{shock.product}/{day}",
                    f"{name} not delivered to {self.city.by_code[site].name} on {self.day} (the stock-out)",
                    day,
                    kind="market",
                    detectable=detectable,
                    level="III",
                )
                for site in shock.sites
            ]
        note = f"{where} offline from {LATE_FROM:02.0f}:00 on {self.day}, its records of the day uploaded last"
        return [Truth("", "market", f"{shock.market}/*/{day}", note, day, kind="late_upload", detectable=detectable)]

    def truck(self, farm: Farm, plant: str, tags: list[str], day: date) -> Batch:
        rng = self.rng
        if farm.in_province:  # B certificate: valid the day it is issued, so issued after midnight
            issued = _at(day, rng.uniform(0.08, 0.6))
            dispatched = self.minutes(issued, 10, 40)
            kind = "B"
        else:  # A certificate, issued the afternoon before for the long drive
            issued = _at(day, rng.uniform(-11, -7))
            dispatched = _at(day, rng.uniform(-6, -1.5))
            kind = "A"
        received = max(self.minutes(dispatched, 60, 150), _at(day, rng.uniform(1.0, 1.5)))
        received = min(received, _at(day, 3.9))
        region = farm.region
        return Batch(
            farm=farm,
            plant=plant,
            head=len(tags),
            tags=tags,
            cert=f"{kind}{region}-{self.city.tag}{self.stamp}{self.serial('cert'):04d}",
            cert_kind=kind,
            cert_issued=issued,
            farm_lot=self.code("FL"),
            lot=self.code("SB"),
            dispatched_at=dispatched,
            received_at=received,
            weights=[round(rng.uniform(105, 128), 1) for _ in tags],
            plate=f"{_plate(region)}{rng.choice('ABCDEFGHJK')}{rng.randint(10000, 99999)}",
            owner=rng.choice(SURNAMES) + "某",
            from_lot=rng.random() < 0.5,
        )

    def rng_batch_details(self, b: Batch) -> None:
        rng = self.rng
        if b.head > 5 and rng.random() < 0.03:
            b.doa = 1
        if b.received_head > 5 and rng.random() < 0.05:
            b.condemned = 1
        b.asf_method = "strip" if rng.random() < 0.2 else "pcr"
        b.sampled_at = self.minutes(b.received_at, 10, 25)
        b.asf_at = self.minutes(b.sampled_at, 30, 60)
        b.report = self.number("ASF")
        b.slaughtered_at = self.minutes(b.asf_at, 10, 40)
        b.quality_cert = self.number("ZQ")
        b.product_cert = self.number("CQ")

    def carcass_kg(self, b: Batch) -> float:
        return b.live_kg * b.slaughtered / b.received_head * self.rng.uniform(0.72, 0.77)

    def slaughter_all(self) -> None:
        """Each plant's carcass output, cut into lots for its buyers: the supermarkets' fixed daily pork
        first, the rest to the wholesalers by their share (the one furthest below its share goes next)."""
        for plant in self.city.slaughterhouses:
            batches = sorted((b for b in self.batches if b.plant == plant), key=lambda b: b.received_at)
            if not batches:
                continue
            output = {id(b): self.carcass_kg(b) for b in batches}
            total = sum(output.values())
            wants = [
                (s, kg * self.rng.uniform(0.95, 1.05))
                for s, (p, kg) in self.city.supermarket_pork.items()
                if p == plant
            ]
            buyers = self.city.carcass_buyers[plant]
            rest = total - sum(kg for _, kg in wants)
            deficit = {w: share * rest for w, share in buyers}
            for b in batches:
                remaining = output[id(b)]
                pieces: list[tuple[str, float]] = []
                while wants and remaining > 60:
                    buyer, kg = wants[0]
                    take = min(kg, remaining)
                    pieces.append((buyer, take))
                    remaining -= take
                    if kg - take < 1:
                        wants.pop(0)
                    else:
                        wants[0] = (buyer, kg - take)
                while remaining > 0.05:
                    buyer = max(deficit, key=lambda w: deficit[w])
                    take = min(remaining, max(deficit[buyer], 250.0))
                    if remaining - take < 250:
                        take = remaining
                    pieces.append((buyer, take))
                    deficit[buyer] -= take
                    remaining -= take
                self.cut(b, pieces)

    def cut(self, b: Batch, pieces: list[tuple[str, float]]) -> None:
        """The batch's output lots, one per buyer piece, each shipped whole to its buyer."""
        made = b.slaughtered_at or b.received_at
        total = _kg(sum(kg for _, kg in pieces))
        weights = [_kg(kg) for _, kg in pieces[:-1]]
        weights.append(_kg(total - sum(weights)))
        docs = {"quarantine_cert_number": b.product_cert, "asf_report": b.report}
        if b.quality_cert:
            docs["quality_cert_number"] = b.quality_cert
        for (buyer, _), kg in zip(pieces, weights, strict=True):
            if kg <= 0:
                continue
            lot = Lot(self.code("CA"), b.plant, PORK, kg, made, dict(docs))
            b.outputs.append(lot)
            shipped = self.minutes(made, 20, 50)
            self.deliver(b.plant, buyer, [(lot, kg)], shipped, self.minutes(shipped, 20, 60))

    def deliver(
        self,
        seller: str,
        buyer: str,
        parts: list[tuple[Lot, float]],
        shipped: datetime,
        received: datetime,
    ) -> Delivery:
        lines = []
        factor = self.city.price_factor.get(seller, 1.0) * self.rng.uniform(0.97, 1.03)
        for src, kg in parts:
            src.left -= kg
            dst = Lot(
                self.code("RL" if self.ops_kind(buyer) != "wholesaler" else "WL"),
                buyer,
                src.product,
                kg,
                received,
                dict(src.docs),
            )
            dst.left = kg * (0.95 if src.product.category == "pork" else 0.97)
            self.lots_of.setdefault(buyer, []).append(dst)
            lines.append(Line(src, dst, kg, round(src.product.wholesale_price * factor, 2)))
        d = Delivery(seller, buyer, self.voucher(seller), shipped, received, lines)
        self.deliveries.append(d)
        return d

    def ops_kind(self, code: str) -> str:
        return self.run.ops[code].kind

    def supply_factor(self, s: Supply) -> float:
        shocked = self.market_shock is not None and (s.market, s.product) == self.shock
        return (self.market_shock.factor if self.market_shock and shocked else 1.0) * self.rng.uniform(0.95, 1.05)

    def veg_supply(self) -> None:
        """Harvests of the afternoon before, shipped in the evening, received at the markets after midnight."""
        for s in self.city.supplies:
            factor = self.supply_factor(s)
            for base, kg in s.bases:
                self.harvest(base, s.wholesaler, PRODUCTS[s.product], _kg(kg * factor * self.rng.uniform(0.98, 1.02)))

    def harvest(self, base: str, wholesaler: str, product: Product, kg: float) -> tuple[Harvest, Delivery]:
        rng = self.rng
        region = self.run.ops[base].region
        harvested = _at(self.day, rng.uniform(-11, -7))
        at = self.minutes(harvested, 20, 90)
        cert = f"HG-{region}-{self.city.tag}{self.stamp}{self.serial('HG'):05d}"
        lot = Lot(self.code("HL"), base, product, kg, at, {"compliance_cert_number": cert}, left=kg)
        h = Harvest(base, lot, harvested, at, cert, region)
        self.harvests.append(h)
        shipped = max(self.minutes(at, 30, 90), _at(self.day, rng.uniform(-6, -1)))
        received = max(self.minutes(shipped, 90, 240), _at(self.day, rng.uniform(0.2, 1.0)))
        d = self.deliver(base, wholesaler, [(lot, kg)], shipped, min(received, _at(self.day, 3.5)))
        dst = d.lines[0].dst
        if rng.random() < 0.7:
            market = self.run.ops[wholesaler].parent or wholesaler
            self.test(
                dst,
                market,
                self.minutes(dst.at, 10, 60),
                "pesticide_rapid",
                "enzyme inhibition",
                round(rng.uniform(3, 35), 1),
            )
        return h, d

    def test(
        self, lot: Lot, operator: str, at: datetime, test: str, method: str, value: float | None, result: str = "pass"
    ) -> Fact:
        data: dict[str, Any] = {"lot": lot.code, "test": test, "method": method, "result": result}
        if value is not None:
            data["value"] = value
        fact = Fact("lot.tested", operator, at, data)
        self.facts.append(fact)
        return fact

    def wholesale_orders(self) -> None:
        """The standing orders of the day, each filled from one of its seller's lots of the product, or from
        several (one line each) when no single lot has enough left."""
        by_buyer: dict[tuple[str, str], list[tuple[Order, Lot, float]]] = {}
        out = self.market_shock if self.market_shock and self.market_shock.kind == "stock_out" else None
        for o in self.city.orders:
            if out and o.product == out.product and (self.run.ops[o.buyer].parent or o.buyer) in out.sites:
                continue  # the stock-out: this site gets none of it today
            lots = [lot for lot in self.lots_of.get(o.seller, []) if lot.product.code == o.product]
            if not lots:
                continue
            kg = _kg(o.kg * self.rng.uniform(0.92, 1.08))
            fits = [lot for lot in lots if lot.left >= kg]
            parts: list[tuple[Lot, float]] = []
            if fits:
                parts.append((self.rng.choice(fits), kg))
            else:
                for src in sorted(lots, key=lambda lot: -lot.left):
                    take = _kg(min(kg, src.left))
                    if take >= 1:
                        parts.append((src, take))
                        kg = _kg(kg - take)
                    if kg < 1:
                        break
            for src, take in parts:
                src.left -= take
                by_buyer.setdefault((o.seller, o.buyer), []).append((o, src, take))
        for (seller, buyer), items in by_buyer.items():
            ready = max(src.at for _, src, _ in items)
            start = 4.0 if items[0][0].product == PORK.code else 3.0
            shipped = max(self.minutes(ready, 15, 30), self.hours(start, start + 2.5))
            received = self.minutes(shipped, 15, 50)
            for _, src, kg in items:
                src.left += kg  # deliver() takes it off again
            self.deliver(seller, buyer, [(src, kg) for _, src, kg in items], shipped, received)

    def retail(self) -> None:
        """Traced sales at stalls and supermarkets; spot tests by the wet markets. Canteens only receive."""
        sc = self.city.scale
        for d in list(self.deliveries):
            kind = self.ops_kind(d.buyer)
            if kind not in ("retailer", "supermarket"):
                continue
            for line in d.lines:
                lot = line.dst
                stall = kind == "retailer"
                count = (sc.sales_per_stall_lot if stall else sc.sales_per_supermarket_lot) + self.rng.randint(-1, 1)
                self.sell(lot, d.buyer, max(3, count), stall)
                if stall and self.rng.random() < 0.08:
                    market = self.run.ops[d.buyer].parent or d.buyer
                    at = self.minutes(lot.at, 20, 80)
                    if lot.product.category == "pork":
                        self.test(lot, market, at, "ractopamine", "colloidal gold strip", None)
                    else:
                        self.test(
                            lot, market, at, "pesticide_rapid", "enzyme inhibition", round(self.rng.uniform(3, 35), 1)
                        )

    def sell(self, lot: Lot, seller: str, count: int, stall: bool) -> None:
        rng = self.rng
        lo, hi = (0.4, 2.0) if lot.product.category == "pork" else (0.3, 1.5)
        if not stall:
            hi += 0.5
        weights = [rng.uniform(lo, hi) for _ in range(count)]
        cap = lot.kg * 0.85
        if sum(weights) > cap:
            weights = [w * cap / sum(weights) for w in weights]
        earliest = max(lot.at + timedelta(minutes=10), _at(self.day, 6.0 if stall else 8.0))
        factor = self.city.price_factor.get(seller, 1.0)
        spike = self.market_shock
        if (
            spike
            and spike.kind == "price"
            and (spike.product, spike.market)
            == (
                lot.product.code,
                self.run.ops[seller].parent or seller,
            )
        ):
            factor *= spike.factor
        for w in weights:
            kg = round(w, 2)
            if kg < 0.05:
                continue
            self.sales.append(
                Sale(
                    self.code("SA"),
                    lot,
                    seller,
                    seller if stall else None,
                    self.sale_time(earliest),
                    kg,
                    round(lot.product.retail_price * factor * rng.uniform(0.97, 1.03), 2),
                )
            )

    def sale_time(self, earliest: datetime) -> datetime:
        hours = list(SALE_HOURS)
        hour = self.rng.choices(hours, weights=[SALE_HOURS[h] for h in hours])[0]
        moment = _at(self.day, hour + self.rng.random())
        if moment < earliest:
            moment = self.minutes(earliest, 0, 60)
        return min(moment, _at(self.day, 21.5))

    # -- faults -----------------------------------------------------------------------------------

    def free(self, items: list[Any]) -> list[Any]:
        return [x for x in items if id(x) not in self.used]

    def take(self, items: list[Any]) -> Any:
        pick = self.rng.choice(items)
        self.used.add(id(pick))
        return pick

    def fault(self, rule: str) -> Truth | None:
        day = self.day.isoformat()
        batches = self.free([b for b in self.batches if b.dispatch and b.outputs and b.doa == 0 and b.condemned == 0])
        if rule in (
            "certificate_expired",
            "origin_outside_zone",
            "asf_not_released",
            "quality_cert_missing",
            "yield_out_of_range",
            "head_count_mismatch",
            "certificate_overused",
            "ear_tag_reused",
        ):
            if rule == "certificate_expired":
                batches = [b for b in batches if b.cert_kind == "B"]
            if not batches:
                return None
            b: Batch = self.take(batches)
            return self.pig_fault(rule, b, day)
        if rule == "asf_positive":
            return self.asf_positive(day)
        if rule == "shelf_life_exceeded":
            return self.stale_sale(day)
        if rule == "test_failed":
            return self.failed_test(day)
        if rule in IMPORT_RULES:
            return self.import_fault(rule, day)
        return self.produce_fault(rule, day)

    def pig_fault(self, rule: str, b: Batch, day: str) -> Truth | None:
        lots = (b.farm_lot, b.lot)
        if rule == "certificate_expired":
            b.cert_issued = _at(self.day, -24 * 2 + self.rng.uniform(-4, -2))
            return Truth(rule, "lot", b.lot, f"B certificate {b.cert} issued two days before the intake", day, lots)
        if rule == "origin_outside_zone":
            farm = self.rng.choice(self.city.outside_farms)
            tags = self.run.extra_tags(farm, self.day, b.head)
            if tags is None:
                return None
            b.farm = farm
            b.tags = tags
            b.cert_kind = "A"
            b.cert = f"A{farm.region}-{self.city.tag}{self.stamp}{self.serial('cert'):04d}"
            b.cert_issued = _at(self.day, self.rng.uniform(-30, -26))
            b.dispatched_at = _at(self.day, self.rng.uniform(-24, -20))
            b.plate = f"{_plate(farm.region)}{self.rng.choice('ABCDEFGHJK')}{self.rng.randint(10000, 99999)}"
            return Truth(rule, "lot", b.lot, f"pigs from {farm.region} (outside the 中南区 zone) admitted", day, lots)
        if rule == "asf_not_released":
            b.asf_reported = False
            for lot in b.outputs:
                lot.docs.pop("asf_report", None)
            return Truth(rule, "lot", b.lot, "no ASF result reported, carcasses shipped", day, lots)
        if rule == "quality_cert_missing":
            b.quality_cert = None
            for lot in b.outputs:
                lot.docs.pop("quality_cert_number", None)
            return Truth(
                rule, "lot", b.lot, "slaughtered without a meat quality certificate, carcasses shipped", day, lots
            )
        if rule == "yield_out_of_range":
            carcass = sum(lot.kg for lot in b.outputs)
            b.recorded_live_kg = _kg(carcass / self.rng.uniform(0.84, 0.9))
            return Truth(
                rule,
                "lot",
                b.lot,
                f"live weight recorded as {b.recorded_live_kg} kg for {carcass:.1f} kg of carcass",
                day,
                lots,
            )
        if rule == "head_count_mismatch":
            b.extra_doa = 1
            return Truth(
                rule, "lot", b.lot, f"{b.head} received + 1 dead on arrival on a {b.head}-head certificate", day, lots
            )
        if rule == "certificate_overused":
            count = self.rng.randint(3, 6)
            tags = self.run.extra_tags(b.farm, self.day, count)
            if tags is None:
                return None
            extra = Batch(
                farm=b.farm,
                plant=b.plant,
                head=count,
                tags=tags,
                cert=b.cert,
                cert_kind=b.cert_kind,
                cert_issued=b.cert_issued,
                farm_lot=b.farm_lot,
                lot=self.code("SB"),
                dispatched_at=b.dispatched_at,
                received_at=self.minutes(b.received_at, 30, 50),
                weights=[round(self.rng.uniform(105, 128), 1) for _ in tags],
                plate=b.plate,
                owner=self.rng.choice(SURNAMES) + "某",
                from_lot=False,
                dispatch=False,
            )
            self.batches.append(extra)
            self.used.add(id(extra))
            return Truth(
                rule,
                "certificate",
                b.cert,
                f"a second intake of {count} pigs on the {b.head}-head certificate of batch {b.lot}",
                day,
                (b.farm_lot, b.lot, extra.lot),
            )
        if rule == "ear_tag_reused":
            count = min(len(b.tags), self.rng.randint(5, 20))
            again = Batch(
                farm=b.farm,
                plant=b.plant,
                head=count,
                tags=b.tags[:count],
                cert_kind="B",
                cert=f"B{b.farm.region}-{self.city.tag}{self.stamp}{self.serial('cert'):04d}",
                cert_issued=self.hours(8, 9),
                farm_lot=self.code("FL"),
                lot="",
                dispatched_at=self.hours(9.5, 12),
                received_at=self.hours(13, 14),
                weights=[],
                plate=b.plate,
                owner="",
                from_lot=False,
            )
            self.batches.append(again)  # dispatched only: the tags are caught at the farm
            self.used.add(id(again))
            return Truth(
                rule,
                "lot",
                again.farm_lot,
                f"{count} ear tags of {b.farm_lot} dispatched again",
                day,
                (again.farm_lot,),
            )
        return None

    def extra_truck(self, day: date, count: int) -> Batch | None:
        """A truck beyond the farms' normal ones (pig numbers 81..99), from a farm in the province."""
        farms = [f for f in self.city.farms if f.in_province] or self.city.farms
        for farm in self.rng.sample(farms, len(farms)):
            tags = self.run.extra_tags(farm, day, count)
            if tags is not None:
                b = self.truck(farm, farm.slaughterhouse, tags, day)
                self.rng_batch_details(b)
                b.asf_method = "pcr"
                self.used.add(id(b))
                return b
        return None

    def asf_positive(self, day: str) -> Truth | None:
        b = self.extra_truck(self.day, self.rng.randint(5, 8))
        if b is None:
            return None
        b.asf_result = "positive"
        b.slaughtered_at = None
        b.disposed_at = self.minutes(b.asf_at or b.received_at, 30, 90)
        self.batches.append(b)
        return Truth("asf_positive", "lot", b.lot, "ASF positive by PCR; the batch is culled", day, (b.farm_lot, b.lot))

    def stale_sale(self, day: str) -> Truth | None:
        """Pork of a small batch slaughtered nine days ago, kept in the plant's cold store, sold today.

        The batch's heads count for the city on the day it was slaughtered, usually before the simulated
        days; ten days instead of nine keep that day off the weekday after the last simulated day, whose
        silence the market monitor would otherwise compare with those few heads."""
        stale_day = self.day - timedelta(days=STALE_DAYS)
        if (self.run.last + timedelta(days=1) - stale_day).days % 7 == 0:
            stale_day -= timedelta(days=1)
        b = self.extra_truck(stale_day, 4)
        stalls = list(self.city.pork_stalls)
        if b is None or not stalls:
            return None
        b.condemned = 0
        b.doa = 0
        self.batches.append(b)
        carcass = _kg(self.carcass_kg(b))
        docs = {"quarantine_cert_number": b.product_cert, "asf_report": b.report}
        if b.quality_cert:
            docs["quality_cert_number"] = b.quality_cert
        store = Lot(self.code("CA"), b.plant, PORK, carcass, b.slaughtered_at or b.received_at, docs, left=carcass)
        b.outputs.append(store)
        stall = self.rng.choice(stalls)
        shipped = self.hours(4.5, 5.5)
        kg = _kg(self.rng.uniform(15, 30))
        d = self.deliver(b.plant, stall, [(store, kg)], shipped, self.minutes(shipped, 20, 40))
        lot = d.lines[0].dst
        self.used.update((id(d), id(lot)))
        sale = Sale(
            self.code("SA"),
            lot,
            stall,
            stall,
            self.minutes(lot.at, 120, 300),
            round(self.rng.uniform(0.8, 1.6), 2),
            round(PORK.retail_price * self.city.price_factor.get(stall, 1.0), 2),
        )
        self.sales.append(sale)
        return Truth(
            "shelf_life_exceeded",
            "lot",
            sale.code,
            f"pork slaughtered on {stale_day} sold on {self.day}",
            day,
            (b.lot, store.code, lot.code, sale.code),
        )

    def failed_test(self, day: str) -> Truth | None:
        supplies = [s for s in self.city.supplies if (s.market, s.product) != self.shock]
        if not supplies:
            return None
        s = self.rng.choice(supplies)
        kg = _kg(max(50.0, s.kg * self.rng.uniform(0.1, 0.15)))
        h, d = self.harvest(s.bases[0][0], s.wholesaler, PRODUCTS[s.product], kg)
        lot = d.lines[0].dst
        self.used.update((id(h), id(d), id(lot)))
        lot.left = 0  # nobody buys from it
        self.facts = [f for f in self.facts if f.data.get("lot") != lot.code]
        market = self.run.ops[s.wholesaler].parent or s.wholesaler
        tested = self.minutes(lot.at, 20, 50)
        self.test(
            lot, market, tested, "pesticide_rapid", "enzyme inhibition", round(self.rng.uniform(52, 85), 1), "fail"
        )
        self.facts.append(
            Fact(
                "lot.disposed",
                s.wholesaler,
                self.minutes(tested, 60, 180),
                {
                    "lot": lot.code,
                    "weight_kg": kg,
                    "reason": "农药残留快检不合格，监督销毁",
                    "notice_number": self.number("XH"),
                },
            )
        )
        return Truth(
            "test_failed",
            "lot",
            lot.code,
            f"pesticide rapid test failed on {kg} kg of {lot.product.name}",
            day,
            (h.lot.code, lot.code),
        )

    def produce_fault(self, rule: str, day: str) -> Truth | None:
        veg = [d for d in self.deliveries if d.lines[0].src.product.category == "produce"]
        downstream = self.free([d for d in veg if self.ops_kind(d.seller) == "wholesaler"])
        upstream = self.free([d for d in veg if self.ops_kind(d.seller) == "planting_base"])
        if rule == "mass_balance":
            lots = list(self.free([s.lot for s in self.sales if s.stall]))
            if not lots:
                return None
            lot: Lot = self.take(lots)
            sold = sum(s.kg for s in self.sales if s.lot is lot)
            last = max(s.at for s in self.sales if s.lot is lot)
            extra = round(lot.kg * self.rng.uniform(1.10, 1.20) - sold, 2)
            self.sales.append(
                Sale(
                    self.code("SA"),
                    lot,
                    lot.holder,
                    lot.holder,
                    min(self.minutes(last, 10, 60), _at(self.day, 21.5)),
                    extra,
                    round(lot.product.retail_price, 2),
                )
            )
            return Truth(
                rule, "lot", lot.code, f"{sold + extra:.2f} kg sold out of a {lot.kg} kg lot", day, (lot.code,)
            )
        if rule == "shipment_mismatch":
            if not downstream:
                return None
            d: Delivery = self.take(downstream)
            d.received_factor = round(self.rng.uniform(1.08, 1.15), 3)
            self.used.update(id(line.dst) for line in d.lines)
            return Truth(
                rule,
                "voucher",
                f"{d.seller}/{d.voucher}",
                f"received {d.received_factor:.0%} of the voucher's weight",
                day,
                tuple(line.dst.code for line in d.lines),
            )
        if rule == "upstream_missing":
            singles = [d for d in downstream if len(d.lines) == 1]
            if not singles:
                return None
            d = self.take(singles)
            d.bogus_from = self.code("XL")
            self.used.add(id(d.lines[0].dst))
            return Truth(
                rule,
                "lot",
                d.bogus_from,
                f"receipt {d.voucher} names a lot nobody reported",
                day,
                (d.lines[0].dst.code,),
                (d.bogus_from,),
            )
        if rule == "time_travel":
            if not upstream:
                return None
            d = self.take(upstream)
            d.shipped_at = self.minutes(d.lines[0].src.at, -240, -120)
            return Truth(
                rule,
                "lot",
                d.lines[0].src.code,
                "shipped two to four hours before it was harvested",
                day,
                (d.lines[0].src.code,),
            )
        if rule == "compliance_cert_missing":
            if not upstream:
                return None
            d = self.take(upstream)
            d.receipt_docs = {}
            return Truth(
                rule,
                "lot",
                d.lines[0].dst.code,
                "received without a compliance certificate",
                day,
                (d.lines[0].dst.code,),
            )
        if rule == "stopped_lot_traded":
            sellers = [d for d in downstream if len(d.lines) == 1]
            by_lot: dict[int, list[Delivery]] = {}
            for d in sellers:
                by_lot.setdefault(id(d.lines[0].src), []).append(d)
            held = [ds for ds in by_lot.values() if all(id(x) not in self.used for x in ds)]
            held = [ds for ds in held if id(ds[0].lines[0].src) not in self.used]
            if not held:
                return None
            ds = self.rng.choice(held)
            lot = ds[0].lines[0].src
            first = min(x.shipped_at for x in ds)
            at = max(self.minutes(first, -30, -10), lot.at + timedelta(minutes=5))
            if at >= first:
                return None
            self.used.update(id(x) for x in ds)
            self.used.add(id(lot))
            self.facts.append(
                Fact(
                    "regulator.lot_held",
                    self.city.regulator,
                    at,
                    {"lot": lot.code, "reason": "监督抽检复核，暂停销售", "scope": "lot"},
                )
            )
            return Truth(rule, "lot", lot.code, f"held at {at:%H:%M}, still sold from afterwards", day, (lot.code,))
        if rule == "conflicting_duplicate":
            if not downstream:
                return None
            d = self.take(downstream)
            d.shipped_event = {}  # filled in when the events are written
            self.used.update(id(line.dst) for line in d.lines)
            return Truth(
                rule,
                "event",
                "",
                "the seller's shipment re-sent straight to Kafka with another price",
                day,
                needs="kafka",
            )
        return None

    # -- imports ----------------------------------------------------------------------------------

    def import_all(self) -> None:
        """The day's imported lots: each standing flow's lot, ``imports`` times (a fraction by chance). About a
        third of them get their disinfection certificate after clearance, before release."""
        wanted = self.run.imports
        n = 0
        for flow in self.city.import_flows:
            for _ in range(int(wanted) + (1 if self.irng.random() < wanted - int(wanted) else 0)):
                imp = self.import_lot(flow, flow.kg * self.irng.uniform(0.95, 1.05))
                if n % 3 == 0:  # the importer's agent brings the certificate a few hours later
                    self.supply_later(imp, "disinfection", self.minutes(imp.stored_at, 60, 360))
                self.ship_import(imp)
                n += 1

    def supply_later(self, imp: Import, which: str, at: datetime | None) -> None:
        """Leave a certificate off the customs entry; supply it at ``at`` (never when None)."""
        number = imp.inspection if which == "inspection" else imp.disinfection
        if which == "inspection":
            imp.inspection = None
        else:
            imp.disinfection = None
        imp.supplied, imp.supplied_at = ({f"{which}_cert_number": number}, at) if number and at else ({}, None)

    def import_lot(self, flow: ImportFlow, kg: float) -> Import:
        """A lot cleared one to three days before, in the importer's cold store until the small hours."""
        rng = self.irng
        product, origins = IMPORTED[flow.product]
        cleared = _at(self.day - timedelta(days=rng.randint(1, 3)), rng.uniform(9, 16))
        stored = cleared + timedelta(seconds=round(rng.uniform(2, 4) * 3600))  # the port to Zhongshan by truck
        released = _at(self.day, rng.uniform(0.5, 1.5))
        lot = Lot(self.code("IM"), flow.importer, product, _kg(kg), cleared)
        imp = Import(
            importer=flow.importer,
            store=flow.store,
            wholesaler=flow.wholesaler,
            lot=lot,
            origin=_weighted_pick(rng, origins),
            port=_weighted_pick(rng, ENTRY_PORTS),
            declaration=self.number("BG"),
            inspection=self.number("RJ"),
            disinfection=self.number("XD"),
            cleared_at=cleared,
            stored_at=stored,
            released_at=released,
            readings=[],
        )
        step = timedelta(minutes=self.run.reading_minutes)
        at = stored + timedelta(minutes=5)
        while at < released:
            imp.readings.append((at, round(max(-21.0, min(-16.2, rng.gauss(FROZEN_C, 0.6))), 1)))
            at += step
        self.imports.append(imp)
        return imp

    def ship_import(self, imp: Import) -> None:
        """The whole lot to its wholesaler before dawn; part of it on to the wholesaler's supermarkets."""
        rng = self.irng
        lot = imp.lot
        shipped = self.minutes(imp.released_at, 10, 30)
        received = self.minutes(shipped, 40, 80)
        factor = self.city.price_factor.get(imp.wholesaler, 1.0)
        held = Lot(self.code("WL"), imp.wholesaler, lot.product, lot.kg, received)
        price = round(lot.product.wholesale_price * 0.92 * rng.uniform(0.97, 1.03), 2)
        voucher = self.voucher(imp.importer)
        imp.deliveries.append(
            Delivery(imp.importer, imp.wholesaler, voucher, shipped, received, [Line(lot, held, lot.kg, price)], {})
        )
        for buyer in self.city.frozen_buyers.get(imp.wholesaler, ()):
            kg = _kg(rng.uniform(80, 250))
            out = max(self.minutes(received, 30, 60), _at(self.day, rng.uniform(5.0, 6.5)))
            into = self.minutes(out, 20, 60)
            dst = Lot(self.code("RL"), buyer, lot.product, kg, into)
            unit = round(lot.product.wholesale_price * factor * rng.uniform(0.97, 1.03), 2)
            voucher = self.voucher(imp.wholesaler)
            imp.deliveries.append(
                Delivery(imp.wholesaler, buyer, voucher, out, into, [Line(held, dst, kg, unit)], receipt_docs={})
            )
            self.sell_imported(dst, buyer)

    def sell_imported(self, lot: Lot, seller: str) -> None:
        """Frozen meat at a supermarket's counter: a few traced sales from 08:00, at most 85 % of the lot."""
        rng = self.irng
        count = max(3, self.city.scale.sales_per_supermarket_lot + rng.randint(-1, 1))
        weights = [rng.uniform(0.5, 2.5) for _ in range(count)]
        cap = lot.kg * 0.85
        if sum(weights) > cap:
            weights = [w * cap / sum(weights) for w in weights]
        factor = self.city.price_factor.get(seller, 1.0)
        earliest = max(lot.at + timedelta(minutes=10), _at(self.day, 8.0))
        for w in weights:
            at = min(max(_at(self.day, rng.uniform(8.0, 20.5)), self.minutes(earliest, 0, 30)), _at(self.day, 21.5))
            price = round(lot.product.retail_price * factor * rng.uniform(0.97, 1.03), 2)
            self.import_sales.append(Sale(self.code("SA"), lot, seller, None, at, round(w, 2), price))

    def import_fault(self, rule: str, day: str) -> Truth | None:
        """One of the day's import lots, or a small one of its own when none is free (a lot that gets a
        certificate after clearance is not taken): its cold store's readings
        above the limit for 1½ to 3 hours (at the default reading interval), or a certificate missing when it
        is traded (supplied afterwards, or never)."""
        if not self.city.import_flows:
            return None
        rng = self.irng
        # A lot whose certificate comes later keeps it: the day shows that case too.
        free = [imp for imp in self.imports if not imp.faulty and not imp.supplied]
        if free:
            imp = rng.choice(free)
        else:  # a part-container: small beside the flow's daily lot, so no market sees a glut
            flow = rng.choice(self.city.import_flows)
            imp = self.import_lot(flow, flow.kg * rng.uniform(0.1, 0.2))
            self.ship_import(imp)
        imp.faulty = True
        lot = imp.lot.code
        if rule == "cold_chain_break":
            count = min(rng.randint(3, 6), max(1, len(imp.readings) - 2))
            start = rng.randrange(1, max(2, len(imp.readings) - count))
            for i in range(start, min(start + count, len(imp.readings))):
                imp.readings[i] = (imp.readings[i][0], round(rng.uniform(-13.5, -7.0), 1))
            note = f"cold store {imp.store} above −15 °C for {count} readings in a row"
            return Truth(rule, "lot", lot, note, day, (lot,))
        missing = rng.choice(("inspection", "disinfection"))
        late = rng.random() < 0.5  # supplied once the meat is sold on: the finding stays
        self.supply_later(imp, missing, self.minutes(imp.deliveries[0].received_at, 60, 120) if late else None)
        note = f"shipped without its {missing} certificate" + (", supplied after the shipment" if late else "")
        return Truth(rule, "lot", lot, note, day, (lot,))

    def emit_import(self, imp: Import) -> None:
        lot = imp.lot
        cleared: dict[str, Any] = {
            "lot": lot.code,
            "product_code": lot.product.code,
            "product_name": lot.product.name,
            "weight_kg": lot.kg,
            "storage": "frozen",
            "customs_declaration_number": imp.declaration,
            "origin_country": imp.origin,
            "entry_port": imp.port,
        }
        if imp.inspection:
            cleared["inspection_cert_number"] = imp.inspection
        if imp.disinfection:
            cleared["disinfection_cert_number"] = imp.disinfection
        self.emit("import.customs_cleared", imp.importer, imp.cleared_at, cleared)
        move = {"lot": lot.code, "store": imp.store, "weight_kg": lot.kg}
        self.emit("coldstore.stored_in", imp.importer, imp.stored_at, move)
        if imp.supplied and imp.supplied_at:
            self.emit("import.documents_supplied", imp.importer, imp.supplied_at, {"lot": lot.code, **imp.supplied})
        sensor = f"{imp.store}-T{1 + int(lot.code[-2:]) % 8}"
        for i in range(0, len(imp.readings), READINGS_PER_EVENT):
            chunk = imp.readings[i : i + READINGS_PER_EVENT]
            self.emit(
                "lot.temperature_recorded",
                imp.importer,
                chunk[-1][0] + timedelta(minutes=2),
                {"lot": lot.code, "readings": [{"at": _iso(at), "celsius": c} for at, c in chunk], "sensor": sensor},
            )
        self.emit("coldstore.released", imp.importer, imp.released_at, move)
        for d in imp.deliveries:
            self.emit_delivery(d)

    # -- events -----------------------------------------------------------------------------------

    def emit(self, event_type: str, operator: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
        self.emitted += 1
        event = {
            "event_id": str(uuid.uuid5(self.run.namespace, f"{self.day.isoformat()}/{self.emitted}")),
            "event_type": event_type,
            "occurred_at": _iso(at),
            "operator": operator,
            "data": data,
        }
        self.run.events.append((at, len(self.run.events), event))
        return event

    def emit_all(self) -> None:
        for b in self.batches:
            self.emit_batch(b)
        for h in self.harvests:
            self.emit(
                "produce.harvested",
                h.base,
                h.at,
                {
                    "lot": h.lot.code,
                    "base_code": h.base,
                    "product_code": h.lot.product.code,
                    "product_name": h.lot.product.name,
                    "weight_kg": h.lot.kg,
                    "compliance_cert_number": h.cert,
                    "origin_region": h.region,
                    "harvested_at": _iso(h.harvested_at),
                },
            )
        conflicts = {id(d) for d in self.deliveries if d.shipped_event is not None}
        pending = [t for t in self.run.truth if t.rule == "conflicting_duplicate" and not t.subject_code]
        for d in self.deliveries:
            shipped = self.emit_delivery(d)
            if id(d) in conflicts and pending:
                copy = {**shipped, "data": {**shipped["data"], "lines": [dict(x) for x in shipped["data"]["lines"]]}}
                line = copy["data"]["lines"][0]
                line["unit_price"] = round(float(line["unit_price"]) * 1.25 + 0.5, 2)
                self.run.conflicts.append(copy)
                t = pending.pop(0)
                self.run.truth[self.run.truth.index(t)] = Truth(
                    t.rule,
                    t.subject_type,
                    shipped["event_id"],
                    f"{t.note} (voucher {d.voucher})",
                    t.day,
                    tuple(line.dst.code for line in d.lines),
                    needs=t.needs,
                )
        for s in self.sales:
            data: dict[str, Any] = {"sale_code": s.code, "lot": s.lot.code, "weight_kg": s.kg, "unit_price": s.price}
            if s.stall:
                data["stall"] = s.stall
            self.emit("retail.sold", s.seller, s.at, data)
        for f in self.facts:
            self.emit(f.event_type, f.operator, f.at, f.data)
        for imp in self.imports:  # last: the ids of the rest of the day do not depend on the imports
            self.emit_import(imp)
        for s in self.import_sales:
            self.emit("retail.sold", s.seller, s.at, {"sale_code": s.code, "lot": s.lot.code, "weight_kg": s.kg,
                                                      "unit_price": s.price})  # fmt: skip

    def emit_batch(self, b: Batch) -> None:
        if b.dispatch:
            self.emit(
                "farm.pigs_dispatched",
                b.farm.operator.code,
                b.dispatched_at,
                {
                    "lot": b.farm_lot,
                    "farm_code": b.farm.farm_code,
                    "quarantine_cert": {
                        "number": b.cert,
                        "kind": b.cert_kind,
                        "issued_at": _iso(b.cert_issued),
                        "head_count": b.head,
                    },
                    "head_count": b.head,
                    "ear_tags": b.tags,
                    "destination": b.plant,
                    "vehicle_plate": b.plate,
                    "origin_region": b.farm.region,
                },
            )
        if not b.lot:
            return  # a dispatch that never arrives anywhere
        received: dict[str, Any] = {
            "lot": b.lot,
            "quarantine_cert_number": b.cert,
            "owner": {"name": b.owner},
            "farm_code": b.farm.farm_code,
            "origin_region": b.farm.region,
            "head_count": b.received_head,
            "dead_on_arrival": b.doa + b.extra_doa,
            "ear_tags": b.tags[: b.received_head],
            "live_weight_kg": b.recorded_live_kg or b.live_kg,
            "vehicle_plate": b.plate,
        }
        if b.from_lot:
            received["from_lot"] = b.farm_lot
        self.emit("slaughter.pigs_received", b.plant, b.received_at, received)
        if b.asf_reported and b.asf_at and b.sampled_at:
            self.emit(
                "slaughter.asf_tested",
                b.plant,
                b.asf_at,
                {
                    "lot": b.lot,
                    "method": b.asf_method,
                    "result": b.asf_result,
                    "sampled_at": _iso(b.sampled_at),
                },
            )
        if b.slaughtered_at and b.outputs:
            data: dict[str, Any] = {
                "lot": b.lot,
                "head_count": b.slaughtered,
                "condemned_head": b.condemned,
                "product_quarantine_cert_number": b.product_cert,
                "outputs": [
                    {
                        "lot": lot.code,
                        "product_code": lot.product.code,
                        "product_name": lot.product.name,
                        "weight_kg": lot.kg,
                    }
                    for lot in b.outputs
                ],
            }
            if b.quality_cert:
                data["quality_cert_number"] = b.quality_cert
            self.emit("slaughter.batch_slaughtered", b.plant, b.slaughtered_at, data)
        if b.disposed_at:
            self.emit(
                "lot.disposed",
                b.plant,
                b.disposed_at,
                {
                    "lot": b.lot,
                    "head": b.received_head,
                    "reason": "非洲猪瘟检测阳性，全群扑杀并无害化处理",
                    "notice_number": self.number("WH"),
                },
            )

    def emit_delivery(self, d: Delivery) -> dict[str, Any]:
        shipped = self.emit(
            "trade.shipped",
            d.seller,
            d.shipped_at,
            {
                "voucher_number": d.voucher,
                "buyer": d.buyer,
                "lines": [{"lot": line.src.code, "weight_kg": line.kg, "unit_price": line.price} for line in d.lines],
            },
        )
        docs = d.receipt_docs if d.receipt_docs is not None else dict(d.lines[0].src.docs)
        lines = []
        for line in d.lines:
            kg = _kg(line.kg * d.received_factor)
            line.dst.kg = kg
            lines.append(
                {
                    "lot": line.dst.code,
                    "from_lot": d.bogus_from or line.src.code,
                    "weight_kg": kg,
                    "product_code": line.src.product.code,
                }
            )
        self.emit(
            "trade.received",
            d.buyer,
            d.received_at,
            {
                "voucher_number": d.voucher,
                "seller": d.seller,
                "lines": lines,
                "documents": docs,
            },
        )
        return shipped


def _weighted_pick(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _plate(region: str) -> str:
    return PLATES.get(region[:2], "粤") + (
        "H" if region[:2] != "44" else "ABCDEFGHJKLMNPQRSTUVWXY"[int(region[2:4]) % 23]
    )
