"""Lineage benchmark: trace and recall on a city-sized trace graph, through HTTP and as raw SQL.

Builds a trace graph shaped like Zhongshan's pork and produce chains (farms → slaughterhouses →
wholesalers → stalls, supermarkets and canteens → coded retail sales; planting bases → vegetable
wholesalers → retail → sales), with fan-out, splitting and mixing, and writes it with ``COPY`` into a
fresh database migrated to the service's schema. Then it starts ``trace-service api`` as a child
process and measures, in the same run and on the same codes (sequential requests, after a warm-up):

* ``backward``  ``GET /v1/lots/{sale}/trace?direction=up`` from random sale (receipt) codes;
* ``forward``   ``GET /v1/lots/{batch}/trace?direction=down`` from random slaughter batches;
* ``recall``    ``GET /v1/lots/{farm lot}/recall`` from the farm lots with the largest downstream
                (a big farm's dispatch that fed many slaughter batches: thousands of lots);
* ``sql``       each of them as raw SQL with asyncpg: the very statement the API runs, with the same
                parameters (``TRACE_JSON`` / ``RECALL_JSON`` from ``trace_service.chain.reads``: the
                code lookup, the walk and the JSON rendering in one statement);
* ``floor``     ``GET /healthz``: what any request costs the client and the server with no database;
* ``rss``       peak resident memory (VmHWM) of the API process.

Volume: a "city day" is ~150 slaughter batches of 20-30 pigs and ~450 harvest lots with everything
downstream of them (~60 k lots: about the 22 M records a year the city uploads). ``--lots`` sets the size
of the graph; the days follow from it, or ``--days`` spreads it over more days at a lower daily volume.

Usage: ``python -m bench.lineage --lots 1000000``. Uses the Postgres server at ``--database-dsn`` (a
fresh database is created and dropped; ``--keep`` keeps it). Prints a table and writes JSON to
``bench/results/`` (or to ``--out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import random
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
import zlib
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson

from bench.common import (
    CpuMeter,
    add_runner_options,
    create_db,
    drop_db,
    machine_busy,
    peak_rss_mb,
    service_env,
    spawn_api,
    stop,
    summary,
    wait_ready,
    write_result,
)
from trace_service.chain.reads import RECALL_JSON, TRACE_JSON
from trace_service.chain.service import MAX_DEPTH, RECALL_PAGE
from trace_service.db.engine import migrate
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings

LOCAL = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 1, tzinfo=LOCAL)

TRACE = "/v1/lots/{code}/trace"
RECALL = "/v1/lots/{code}/recall"

LOT_COLUMNS = [
    "id", "code", "kind", "product_code", "product_name", "holder", "status", "kg_in", "kg_out", "kg_sold",
    "head_in", "head_out", "kg_created", "head_created", "created_at", "created_by_event", "creator_type",
    "origin_region", "category", "slaughtered_at", "documents",
]  # fmt: skip
EDGE_COLUMNS = ["parent_id", "child_id", "event_id", "kg", "head", "kind", "voucher_key"]
EVENT_COLUMNS = [
    "event_id", "event_type", "occurred_at", "operator", "envelope", "sha256", "source", "kafka_partition",
    "kafka_offset",
]  # fmt: skip
OPERATOR_COLUMNS = ["code", "name", "kind", "region", "parent"]

# City volume of one day (domain.md "Scale to plan for").
BATCHES_PER_DAY = 150
HARVESTS_PER_DAY = 450

LIVE_PIG = ("PIG-LIVE", "生猪")
PORK = [
    ("PORK-CARCASS", "白条猪肉（片猪肉）"),
    ("PORK-FORELEG", "猪前腿肉"),
    ("PORK-HINDLEG", "猪后腿肉"),
    ("PORK-BELLY", "猪五花肉"),
    ("PORK-RIBS", "猪排骨"),
    ("PORK-OFFAL", "猪副产品"),
]
VEG = [
    ("VEG-CAIXIN", "菜心"),
    ("VEG-SHENGCAI", "生菜"),
    ("VEG-BAICAI", "大白菜"),
    ("VEG-XIHONGSHI", "番茄"),
    ("VEG-HUANGGUA", "黄瓜"),
    ("VEG-TUDOU", "马铃薯"),
    ("VEG-LUOBO", "白萝卜"),
    ("VEG-QINCAI", "芹菜"),
    ("VEG-BOCAI", "菠菜"),
    ("VEG-DOUJIAO", "豆角"),
]
# Zhongshan and its suppliers: farms mostly local or in the province, bases from further away.
FARM_REGIONS = (["442000"] * 6) + ["441200", "440800", "441800", "450100", "430100"]
BASE_REGIONS = (["442000"] * 3) + ["440100", "441300", "440800", "530100", "450100", "520100", "370100"]


@dataclass
class Chunk:
    lots: list[tuple[Any, ...]] = field(default_factory=list)
    edges: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class Operators:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    by_kind: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    region: dict[str, str] = field(default_factory=dict)

    def add(self, code: str, name: str, kind: str, region: str, parent: str | None = None) -> str:
        self.rows.append((code, name, kind, region, parent))
        self.by_kind[kind].append(code)
        self.region[code] = region
        return code


def _operators() -> Operators:
    ops = Operators()
    for i in range(100):
        region = FARM_REGIONS[i % len(FARM_REGIONS)]
        ops.add(f"{region}0{i + 1:05d}", f"养殖场{i + 1:03d}", "farm", region)
    for i in range(4):
        ops.add(f"4420001{i + 1:05d}", f"中山市定点屠宰厂{i + 1}", "slaughterhouse", "442000")
    meat_market = ops.add("442000700001", "东升农产品批发市场", "wholesale_market", "442000")
    veg_market = ops.add("442000700002", "中山市农产品批发市场", "wholesale_market", "442000")
    for i in range(120):
        ops.add(f"4420002{i + 1:05d}", f"肉类批发商{i + 1:04d}", "wholesaler", "442000", meat_market)
    for i in range(300):
        code = f"4420002{i + 501:05d}"
        ops.add(code, f"蔬菜批发商{i + 1:04d}", "wholesaler", "442000", veg_market)
        ops.by_kind["veg_wholesaler"].append(code)
    ops.by_kind["meat_wholesaler"] = ops.by_kind["wholesaler"][:120]
    markets = [ops.add(f"4420007{i + 11:05d}", f"农贸市场{i + 1:03d}", "retail_market", "442000") for i in range(80)]
    for i in range(2000):
        ops.add(f"4420003{i + 1:05d}", f"摊位{i + 1:04d}", "retailer", "442000", markets[i % len(markets)])
    for i in range(60):
        ops.add(f"4420004{i + 1:05d}", f"超市{i + 1:03d}", "supermarket", "442000")
    for i in range(120):
        ops.add(f"4420005{i + 1:05d}", f"食堂{i + 1:03d}", "canteen", "442000")
    for i in range(400):
        region = BASE_REGIONS[i % len(BASE_REGIONS)]
        ops.add(f"{region}6{i + 1:05d}", f"种植基地{i + 1:03d}", "planting_base", region)
    return ops


def _farm_docs(farm: str, d: int) -> dict[str, Any]:
    return {"farm_code": farm[:6] + farm[-4:], "quarantine_cert": {"number": f"B{farm[-6:]}{d:04d}", "kind": "B"}}


def _split(total: float, parts: int, rng: random.Random) -> list[float]:
    weights = [rng.uniform(0.6, 1.4) for _ in range(parts)]
    s = sum(weights)
    return [round(total * w / s, 3) for w in weights]


def _split_head(total: int, parts: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


class CityGraph:
    """Generates the graph one day at a time, with ids assigned here so edges can name them."""

    def __init__(self, seed: int, scale: float, final_day: int, big_farms: int = 3) -> None:
        self.rng = random.Random(seed)
        self.scale = scale
        self.final_day = final_day
        self.ops = _operators()
        self.next_id = 1
        self.offsets = [0, 0, 0, 0]
        self.partition = {code: zlib.crc32(code.encode()) % 4 for code, *_ in self.ops.rows}
        farms = self.ops.by_kind["farm"]
        self.big_farms = farms[:big_farms]
        self.farms = farms[big_farms:]
        self.houses = self.ops.by_kind["slaughterhouse"]
        self.retail = (
            self.ops.by_kind["retailer"] * 8 + self.ops.by_kind["supermarket"] * 20 + self.ops.by_kind["canteen"] * 6
        )
        self.kind_of = {code: kind for code, _, kind, *_ in self.ops.rows}
        self.sale_ids = array("q")
        self.batch_ids = array("q")
        self.big_lots: list[int] = []
        self.lots_by_kind: Counter[str] = Counter()
        self.edges_by_kind: Counter[str] = Counter()
        self.events = 0

    # -- rows -------------------------------------------------------------------------------------------

    def _event(self, c: Chunk, event_type: str, at: datetime, operator: str, data: dict[str, Any]) -> uuid.UUID:
        eid = uuid.uuid4()
        envelope = orjson.dumps(
            {"event_id": str(eid), "event_type": event_type, "occurred_at": at, "operator": operator, "data": data}
        )
        part = self.partition[operator]
        self.offsets[part] += 1
        digest = hashlib.sha256(envelope).digest()
        row = (eid, event_type, at, operator, envelope.decode(), digest, "kafka", part, self.offsets[part])
        c.events.append(row)
        self.events += 1
        return eid

    def _lot(
        self,
        c: Chunk,
        prefix: str,
        kind: str,
        product: tuple[str, str],
        holder: str,
        at: datetime,
        eid: uuid.UUID,
        event_type: str,
        *,
        kg_in: float = 0.0,
        kg_out: float = 0.0,
        kg_sold: float = 0.0,
        head: int = 0,
        kg_created: float = 0.0,
        origin: str | None = None,
        category: str,
        slaughtered_at: datetime | None = None,
        documents: dict[str, Any] | None = None,
    ) -> tuple[int, str]:
        lot_id = self.next_id
        self.next_id += 1
        code = f"{prefix}{at:%y%m%d}{lot_id:09d}"
        status = "active" if kg_in - kg_out > 0.001 else "exhausted"
        docs = orjson.dumps(documents or {}).decode()
        c.lots.append((
            lot_id, code, kind, product[0], product[1], holder, status, kg_in, kg_out, kg_sold, head, head, kg_created,
            head, at, eid, event_type, origin, category, slaughtered_at, docs,
        ))  # fmt: skip
        self.lots_by_kind[kind] += 1
        return lot_id, code

    def _edge(
        self, c: Chunk, parent: int, child: int, eid: uuid.UUID, kind: str, kg: float | None, head: int | None = None
    ) -> None:
        c.edges.append((parent, child, eid, kg, head, kind, None))
        self.edges_by_kind[kind] += 1

    def _trade(self, c: Chunk, parent: int, child: int, eid: uuid.UUID, kg: float, voucher_key: str) -> None:
        c.edges.append((parent, child, eid, kg, None, "trade", voucher_key))
        self.edges_by_kind["trade"] += 1

    # -- one day ----------------------------------------------------------------------------------------

    def day(self, d: int, scale: float | None = None) -> Chunk:
        """The lots, edges and events of day ``d``, at ``scale`` of the city's volume for this day only."""
        c = Chunk()
        day0 = START + timedelta(days=d)
        normal, self.scale = self.scale, scale or self.scale
        try:
            self._pork(c, d, day0)
            self._produce(c, d, day0)
        finally:
            self.scale = normal
        return c

    def _minutes(self, base: datetime, lo: float, hi: float) -> datetime:
        return base + timedelta(minutes=self.rng.uniform(lo, hi))

    def _pork(self, c: Chunk, d: int, day0: datetime) -> None:
        rng = self.rng
        batches = []
        for _ in range(max(1, round(BATCHES_PER_DAY * self.scale))):
            house = rng.choices(self.houses, (40, 30, 20, 10))[0]
            pigs = rng.randint(20, 30)
            sources = rng.choices((1, 2, 3), (45, 40, 15))[0]
            batches.append({"house": house, "pigs": pigs, "slices": _split_head(pigs, sources, rng), "big": None})
        # The big farms: one truckload a day of 100-450 pigs under one certificate, split over 10-18
        # slaughter batches of one slaughterhouse. A recall of such a lot covers thousands of lots.
        big_lots: list[tuple[str, list[dict[str, Any]]]] = []
        for farm in self.big_farms:
            if rng.random() > min(1.0, self.scale):
                continue
            # It goes to one of the slaughterhouses with the most batches left to feed that day.
            free_by_house = {h: [b for b in batches if b["house"] == h and b["big"] is None] for h in self.houses}
            house = rng.choice(sorted(self.houses, key=lambda h: -len(free_by_house[h]))[:2])
            free = free_by_house[house]
            if not free:
                continue
            fed = rng.sample(free, min(len(free), rng.randint(10, 18)))
            for b in fed:
                b["big"] = len(big_lots)
            big_lots.append((farm, fed))

        # Farm lots (farm.pigs_dispatched).
        big_ids = []
        for farm, fed in big_lots:
            head = sum(b["slices"][0] for b in fed)
            at = self._minutes(day0, 20, 90)
            eid = self._event(c, "farm.pigs_dispatched", at, farm, {"lot": f"big-{farm}", "head_count": head})
            lot, _ = self._lot(
                c, "FL", "live_pigs", LIVE_PIG, farm, at, eid, "farm.pigs_dispatched",
                head=head, origin=self.ops.region[farm], category="pork",
                documents=_farm_docs(farm, d),
            )  # fmt: skip
            big_ids.append(lot)
            self.big_lots.append(lot)

        portions = []
        for b in batches:
            house = b["house"]
            sources: list[tuple[int, int]] = []
            origin = None
            for i, head in enumerate(b["slices"]):
                if i == 0 and b["big"] is not None:
                    sources.append((big_ids[b["big"]], head))
                    origin = self.ops.region[big_lots[b["big"]][0]]
                    continue
                farm = rng.choice(self.farms)
                origin = origin or self.ops.region[farm]
                at = self._minutes(day0, 20, 120)
                eid = self._event(c, "farm.pigs_dispatched", at, farm, {"head_count": head})
                lot, _ = self._lot(
                    c, "FL", "live_pigs", LIVE_PIG, farm, at, eid, "farm.pigs_dispatched",
                    head=head, origin=self.ops.region[farm], category="pork",
                    documents=_farm_docs(farm, d),
                )  # fmt: skip
                sources.append((lot, head))

            # Slaughter intake (slaughter.pigs_received): the batch, fed by 1-3 farm lots.
            live_kg = round(sum(rng.uniform(105, 126) for _ in range(b["pigs"])), 3)
            at = self._minutes(day0, 130, 280)
            eid = self._event(c, "slaughter.pigs_received", at, house, {"head_count": b["pigs"]})
            batch, batch_code = self._lot(
                c, "SB", "slaughter_batch", LIVE_PIG, house, at, eid, "slaughter.pigs_received",
                kg_in=live_kg, kg_out=live_kg, kg_created=live_kg, head=b["pigs"],
                origin=origin, category="pork",
                documents={"quarantine_cert_number": f"B{house[-5:]}{d:04d}", "dead_on_arrival": 0},
            )  # fmt: skip
            self.batch_ids.append(batch)
            for lot, head in sources:
                self._edge(c, lot, batch, eid, "intake", None, head)

            # Slaughter (slaughter.batch_slaughtered): 2-6 carcass or cut lots.
            slaughtered = at + timedelta(minutes=rng.uniform(60, 120))
            eid = self._event(c, "slaughter.batch_slaughtered", slaughtered, house, {"lot": batch_code})
            outputs = rng.randint(2, 6)
            products = [PORK[0]] * 2 if outputs == 2 else [PORK[0], *rng.sample(PORK[1:], outputs - 1)]
            docs = {
                "quality_cert_number": f"ZQ{house[-5:]}{d:04d}{batch:07d}",
                "product_quarantine_cert_number": f"CQ{house[-5:]}{d:04d}{batch:07d}",
                "slaughter_batch": batch_code,
            }
            for product, kg in zip(products, _split(live_kg * rng.uniform(0.72, 0.78), outputs, rng), strict=True):
                carcass, _ = self._lot(
                    c, "CA", "carcass", product, house, slaughtered, eid, "slaughter.batch_slaughtered",
                    kg_in=kg, kg_out=kg, kg_created=kg, category="pork", slaughtered_at=slaughtered, documents=docs,
                )  # fmt: skip
                self._edge(c, batch, carcass, eid, "transform", kg)
                # A carcass lot goes to one wholesaler, sometimes split between two or three.
                parts = rng.choices((1, 2, 3), (75, 18, 7))[0]
                portions += [(carcass, house, part, product, slaughtered) for part in _split(kg, parts, rng)]

        # Wholesale (trade.received): a wholesaler's lot is one carcass lot, or mixes two or three.
        rng.shuffle(portions)
        i = 0
        while i < len(portions):
            size = rng.choices((1, 2, 3), (75, 18, 7))[0]
            group = portions[i : i + size]
            if len({p[0] for p in group}) < len(group):
                group = group[:1]
            i += len(group)
            buyer = rng.choice(self.ops.by_kind["meat_wholesaler"])
            at = max(p[4] for p in group) + timedelta(minutes=rng.uniform(30, 90))
            kg = round(sum(p[2] for p in group), 3)
            voucher = f"JY{group[0][1][-5:]}{at:%y%m%d}{self.next_id:09d}"
            eid = self._event(c, "trade.received", at, buyer, {"voucher_number": voucher, "seller": group[0][1]})
            lot, _ = self._lot(
                c, "WL", "received", group[0][3], buyer, at, eid, "trade.received",
                kg_in=kg, kg_out=kg, category="pork", slaughtered_at=min(p[4] for p in group),
                documents={"voucher_number": voucher, "seller": group[0][1]},
            )  # fmt: skip
            for carcass, house, part, _, _ in group:
                self._trade(c, carcass, lot, eid, part, f"{house}/{voucher}")
            self._retail(c, d, lot, buyer, kg, group[0][3], "pork", min(p[4] for p in group), at)

    def _produce(self, c: Chunk, d: int, day0: datetime) -> None:
        rng = self.rng
        bases = self.ops.by_kind["planting_base"]
        by_product: dict[tuple[str, str], list[tuple[int, str, float]]] = defaultdict(list)
        for _ in range(max(1, round(HARVESTS_PER_DAY * self.scale))):
            base = rng.choice(bases)
            product = rng.choice(VEG)
            kg = round(rng.uniform(1500, 5000), 3)
            at = self._minutes(day0 - timedelta(days=1), 15 * 60, 21 * 60)
            eid = self._event(c, "produce.harvested", at, base, {"product_code": product[0], "weight_kg": kg})
            lot, _ = self._lot(
                c, "HV", "produce", product, base, at, eid, "produce.harvested",
                kg_in=kg, kg_out=kg, kg_created=kg, origin=self.ops.region[base], category="produce",
                documents={"compliance_cert_number": f"HG{base[-5:]}{d:04d}{self.next_id:08d}", "base_code": base},
            )  # fmt: skip
            parts = rng.choices((1, 2, 3), (50, 35, 15))[0]
            by_product[product] += [(lot, base, part) for part in _split(kg, parts, rng)]

        # Vegetable wholesalers: one harvest lot, or two of the same vegetable mixed.
        for product, portions in by_product.items():
            rng.shuffle(portions)
            i = 0
            while i < len(portions):
                group = portions[i : i + rng.choices((1, 2), (85, 15))[0]]
                if len({p[0] for p in group}) < len(group):
                    group = group[:1]
                i += len(group)
                buyer = rng.choice(self.ops.by_kind["veg_wholesaler"])
                at = self._minutes(day0, 60, 240)
                kg = round(sum(p[2] for p in group), 3)
                voucher = f"PF{group[0][1][-5:]}{at:%y%m%d}{self.next_id:09d}"
                eid = self._event(c, "trade.received", at, buyer, {"voucher_number": voucher, "seller": group[0][1]})
                lot, _ = self._lot(
                    c, "WL", "received", product, buyer, at, eid, "trade.received",
                    kg_in=kg, kg_out=kg, category="produce",
                    documents={"voucher_number": voucher, "seller": group[0][1]},
                )  # fmt: skip
                for harvest, base, part in group:
                    self._trade(c, harvest, lot, eid, part, f"{base}/{voucher}")
                self._retail(c, d, lot, buyer, kg, product, "produce", None, at)

    def _retail(
        self,
        c: Chunk,
        d: int,
        parent: int,
        seller: str,
        kg: float,
        product: tuple[str, str],
        category: str,
        slaughtered_at: datetime | None,
        at: datetime,
    ) -> None:
        """A wholesale lot split to 3-10 stalls, supermarkets and canteens, and their coded sales."""
        rng = self.rng
        final = d >= self.final_day
        for part in _split(kg, rng.randint(3, 10), rng):
            buyer = rng.choice(self.retail)
            kind = self.kind_of[buyer]
            t = at + timedelta(minutes=rng.uniform(30, 150))
            voucher = f"PF{seller[-5:]}{t:%y%m%d}{self.next_id:09d}"
            # Coded sales: a label-scale receipt per sale at supermarkets, fewer at wet-market stalls,
            # none at canteens. On the last day stalls have sold only part of their stock.
            sales = 0 if kind == "canteen" else rng.randint(5, 20) if kind == "supermarket" else rng.randint(1, 12)
            sold_share = 0.0 if kind == "canteen" else (rng.uniform(0.3, 0.8) if final else 1.0)
            used = part if kind == "canteen" and not final else round(part * sold_share, 3)
            eid = self._event(c, "trade.received", t, buyer, {"voucher_number": voucher, "seller": seller})
            lot, _ = self._lot(
                c, "RL", "received", product, buyer, t, eid, "trade.received",
                kg_in=part, kg_out=used, kg_sold=round(part * sold_share, 3), category=category,
                slaughtered_at=slaughtered_at, documents={"voucher_number": voucher, "seller": seller},
            )  # fmt: skip
            self._trade(c, parent, lot, eid, part, f"{seller}/{voucher}")
            if not sales:
                continue
            each = round(part * sold_share / sales, 3)
            for _ in range(sales):
                sold_at = t + timedelta(minutes=rng.uniform(20, 14 * 60))
                price = round(rng.uniform(24, 38) if category == "pork" else rng.uniform(3, 12), 2)
                eid = self._event(c, "retail.sold", sold_at, buyer, {"stall": buyer, "weight_kg": each})
                sale, _ = self._lot(
                    c, "SA", "sale", product, buyer, sold_at, eid, "retail.sold",
                    kg_in=each, kg_out=each, kg_created=each, category=category, slaughtered_at=slaughtered_at,
                    documents={"stall": buyer, "unit_price": price},
                )  # fmt: skip
                self.sale_ids.append(sale)
                self._edge(c, lot, sale, eid, "sale", each)


# -- building the database -------------------------------------------------------------------------------


async def _copy_worker(dsn: str, table: str, columns: list[str], queue: asyncio.Queue[list[Any] | None]) -> float:
    conn = await asyncpg.connect(dsn)
    busy = 0.0
    try:
        # The ids are generated together with the edges that name them: skip the per-row FK triggers.
        await conn.execute("SET session_replication_role = replica; SET synchronous_commit = off")
        while (rows := await queue.get()) is not None:
            t0 = time.monotonic()
            await conn.copy_records_to_table(table, records=rows, columns=columns)
            busy += time.monotonic() - t0
    finally:
        await conn.close()
    return busy


def _city_day_lots(seed: int) -> int:
    probe = CityGraph(seed + 1, 0.25, final_day=10**6)
    return round(len(probe.day(0).lots) / 0.25)


async def build(dsn: str, args: argparse.Namespace) -> tuple[CityGraph, dict[str, Any]]:
    per_day = _city_day_lots(args.seed)
    if args.days:
        days = args.days
        scale = args.lots / (days * per_day)
    else:
        days = max(1, round(args.lots / per_day))
        scale = args.lots / (days * per_day)
    graph = CityGraph(args.seed, scale, final_day=days - 1)
    print(
        f"building: ~{per_day:,} lots per city day; {args.lots:,} lots = {days} day(s) at {scale:.0%} of the "
        f"city's daily volume ({max(1, round(BATCHES_PER_DAY * scale))} slaughter batches, "
        f"{max(1, round(HARVESTS_PER_DAY * scale))} harvests a day)",
        flush=True,
    )
    t0 = time.monotonic()
    conn = await asyncpg.connect(dsn)
    await conn.copy_records_to_table("operators", records=graph.ops.rows, columns=OPERATOR_COLUMNS)
    await conn.close()
    queues: dict[str, asyncio.Queue[list[Any] | None]] = {t: asyncio.Queue(maxsize=3) for t in ("lots", "edges", "ev")}
    workers = [
        asyncio.create_task(_copy_worker(dsn, "lots", LOT_COLUMNS, queues["lots"])),
        asyncio.create_task(_copy_worker(dsn, "edges", EDGE_COLUMNS, queues["edges"])),
        asyncio.create_task(_copy_worker(dsn, "events", EVENT_COLUMNS, queues["ev"])),
    ]
    lots = 0
    gen_s = 0.0
    d = 0
    last_print = 0.0
    while lots < args.lots:
        g0 = time.monotonic()
        # The last day holds what is left of the budget, so the graph ends close to --lots.
        remaining = min(scale, 1.05 * (args.lots - lots) / per_day)
        chunk = await asyncio.to_thread(graph.day, d, remaining)
        gen_s += time.monotonic() - g0
        lots += len(chunk.lots)
        for name, rows in (("lots", chunk.lots), ("edges", chunk.edges), ("ev", chunk.events)):
            for i in range(0, len(rows), 50_000):
                await queues[name].put(rows[i : i + 50_000])
        for w in workers:
            if w.done():
                w.result()  # a failed COPY stops the build at once
        d += 1
        if time.monotonic() - last_print > 5 or lots >= args.lots:
            last_print = time.monotonic()
            print(
                f"  day {d}: {lots:,} lots, {sum(graph.edges_by_kind.values()):,} edges, "
                f"{graph.events:,} events generated ({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    for q in queues.values():
        await q.put(None)
    copy_busy = await asyncio.gather(*workers)
    loaded = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT setval(pg_get_serial_sequence('lots', 'id'), (SELECT max(id) FROM lots))")
        # VACUUM as well as ANALYZE: a long-lived database has its visibility map set, so the
        # edge indexes serve the walk as index-only scans, and COPY's hint bits are written now.
        await conn.execute("VACUUM (ANALYZE) lots, edges, events, operators")
        sizes = {
            t: int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t))
            for t in ("lots", "edges", "events")
        }
        db_size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()
    info = {
        "days": d,
        "scale": scale,
        "lots": lots,
        "edges": sum(graph.edges_by_kind.values()),
        "events": graph.events,
        "operators": len(graph.ops.rows),
        "lots_by_kind": dict(graph.lots_by_kind),
        "edges_by_kind": dict(graph.edges_by_kind),
        "big_farm_lots": len(graph.big_lots),
        "build_s": time.monotonic() - t0,
        "generate_s": gen_s,
        "copy_busy_s": dict(zip(("lots", "edges", "events"), copy_busy, strict=True)),
        "vacuum_analyze_s": time.monotonic() - loaded,
        "table_bytes": sizes,
        "db_bytes": db_size,
    }
    print(
        f"  built in {info['build_s']:.0f} s (generate {gen_s:.0f} s, VACUUM ANALYZE {info['vacuum_analyze_s']:.0f} s);"
        f" database {db_size / 2**20:,.0f} MB",
        flush=True,
    )
    return graph, info


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    path: str  # "/v1/lots/{code}/trace" or ".../recall"
    params: dict[str, Any]
    statement: str
    direction: str
    max_depth: int
    # After (code, depth, direction): a regulator's trace walks pending links too (confirmed_only false); the
    # recall adds its first page (no cursor, the API's page size).
    rest: tuple[Any, ...] = (False,)

    def args(self, code: str) -> tuple[Any, ...]:
        """The parameters the API passes (trace_service.chain.reads.trace_json / recall_json)."""
        return (code, self.max_depth, self.direction, *self.rest)


async def _measure(
    client: httpx.AsyncClient, conn: asyncpg.Connection, case: Case, codes: list[str], warm: int
) -> dict[str, Any]:
    """HTTP and raw SQL on the same codes, alternating which goes first, sequentially."""
    http_ms: list[float] = []
    sql_ms: list[float] = []
    lots: list[int] = []
    sizes: list[int] = []
    measured: list[str] = []
    identical = None
    for i, code in enumerate(codes):
        path = case.path.format(code=code)
        for first_http in (i % 2 == 0, i % 2 != 0):
            if first_http:
                t0 = time.perf_counter()
                r = await client.get(path, params=case.params)
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:300]}")
                body = r.content
                if i >= warm:
                    http_ms.append(dt)
            else:
                t0 = time.perf_counter()
                text = await conn.fetchval(case.statement, *case.args(code))
                dt = (time.perf_counter() - t0) * 1000
                if i >= warm:
                    sql_ms.append(dt)
        if i >= warm:
            found = orjson.loads(text)["lots"]
            lots.append(len(found))
            sizes.append(len(body))
            measured.append(code)
            if identical is None:
                identical = body == text.encode()
    http, sql = summary(http_ms), summary(sql_ms)
    # The code whose walk found the median number of lots: the one EXPLAIN ANALYZE shows.
    typical = min(range(len(lots)), key=lambda i: abs(lots[i] - statistics.median(lots)))
    return {
        "typical_code": measured[typical],
        "http_ms": http,
        "sql_ms": sql,
        "ratio_p50": http["p50"] / sql["p50"],
        "ratio_mean": http["mean"] / sql["mean"],
        "lots": {"p50": statistics.median(lots), "min": min(lots), "max": max(lots)},
        "response_bytes_p50": statistics.median(sizes),
        "http_body_equals_sql_text": identical,
        "codes": len(codes) - warm,
    }


async def _explain(conn: asyncpg.Connection, case: Case, code: str) -> dict[str, Any]:
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + case.statement, *case.args(code))
    text = "\n".join(r[0] for r in rows)
    figures = {}
    for line in text.splitlines():
        for key in ("Planning Time", "Execution Time"):
            if line.strip().startswith(key):
                figures[key.split()[0].lower() + "_ms"] = float(line.split(":")[1].split()[0])
    return {"code": code, **figures, "plan": text}


async def _downstream(conn: asyncpg.Connection, lot_ids: list[int]) -> list[tuple[int, str, int]]:
    out = []
    for lot in lot_ids:
        n = await conn.fetchval(
            """
            WITH RECURSIVE walk(id, depth) AS (
                SELECT $1::bigint, 0
                UNION
                SELECT e.child_id, w.depth + 1 FROM walk w JOIN edges e ON e.parent_id = w.id WHERE w.depth < $2
            )
            SELECT count(DISTINCT id) FROM walk
            """,
            lot,
            MAX_DEPTH,
        )
        code = await conn.fetchval("SELECT code FROM lots WHERE id = $1", lot)
        out.append((lot, code, int(n)))
    return sorted(out, key=lambda t: -t[2])


async def _codes(conn: asyncpg.Connection, ids: list[int]) -> list[str]:
    rows = await conn.fetch("SELECT id, code FROM lots WHERE id = ANY($1::bigint[])", ids)
    by_id = {r["id"]: r["code"] for r in rows}
    return [by_id[i] for i in ids]


async def _minimal_client(base: str, token: str, codes: list[str], warm: int) -> dict[str, Any]:
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)

    async def get(path: str) -> bytes:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"GET {path} answered {head[:100]!r}")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
        return await reader.readexactly(length)

    out = {}
    try:
        for name, paths in (
            ("backward", [f"/v1/lots/{code}/trace?direction=up&max_depth=20" for code in codes]),
            ("floor_healthz", ["/healthz"] * (warm + 1000)),
        ):
            times = []
            for i, path in enumerate(paths):
                t0 = time.perf_counter()
                await get(path)
                if i >= warm:
                    times.append((time.perf_counter() - t0) * 1000)
            out[name] = summary(times)
    finally:
        writer.close()
    return out


async def _busy_cores(seconds: float) -> float:
    """How many cores were busy (all processes) over the next ``seconds``."""
    busy0, total0 = machine_busy()
    await asyncio.sleep(seconds)
    busy1, total1 = machine_busy()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-lineage-"))
    dbname = await create_db(args.database_dsn, "trace_bench_lineage")
    database_url = f"{args.database_url}/{dbname}"
    dsn = f"{args.database_dsn}/{dbname}"
    settings = Settings(database_url=database_url)
    token = secrets.token_urlsafe(24)
    result: dict[str, Any] = {"database": dbname}
    api: subprocess.Popen[bytes] | None = None
    conn: asyncpg.Connection | None = None
    try:
        await asyncio.to_thread(migrate, database_url)
        graph, result["graph"] = await build(dsn, args)
        rng = random.Random(args.seed + 7)

        # No broker: the lineage endpoints do not need one (readiness says the broker is down).
        env = service_env(database_url, f"127.0.0.1:{find_free_port()}", TRACE_ADMIN_TOKEN=token)
        api, base = spawn_api(env, tmp / "api.log")
        conn = await asyncpg.connect(
            dsn,
            server_settings={
                "application_name": "bench-lineage-sql",
                "statement_timeout": str(settings.statement_timeout_ms),
                "TimeZone": settings.timezone,  # as the API's connections: the JSON carries the same offsets
            },
        )
        sale_ids = rng.choices(graph.sale_ids, k=args.warmup + args.backward)
        batch_ids = rng.choices(graph.batch_ids, k=args.warmup + args.forward)
        farm = await _downstream(conn, graph.big_lots)
        top = farm[: max(1, min(len(farm), args.recall))]
        result["recall_candidates"] = [{"code": code, "downstream_lots": n} for _, code, n in top]
        recall_codes = [top[i % len(top)][1] for i in range(args.warmup // 4 + args.recall)]
        rng.shuffle(recall_codes)
        up = {"direction": "up", "max_depth": 20}
        down = {"direction": "down", "max_depth": 20}
        cases = [
            (Case("backward", TRACE, up, TRACE_JSON, "up", 20), await _codes(conn, sale_ids), args.warmup),
            (Case("forward", TRACE, down, TRACE_JSON, "down", 20), await _codes(conn, batch_ids), args.warmup),
            (
                Case("recall", RECALL, {}, RECALL_JSON, "down", MAX_DEPTH, (False, None, None, RECALL_PAGE)),
                recall_codes,
                args.warmup // 4,
            ),
        ]

        try:  # /healthz: with no broker, /readyz never answers 200
            await wait_ready(base, "/healthz", procs=[api])
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {(tmp / 'api.log').read_text()[-2000:]}") from None
        limits = httpx.Limits(max_keepalive_connections=1, max_connections=1)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers, limits=limits) as client:
            # Nothing of ours runs now: what the cores do meanwhile is other processes' work, which would
            # inflate every figure (the load average still counts the build of a minute ago).
            result["background_cpu"] = await _busy_cores(3.0)
            if (busy := result["background_cpu"]) > 0.1:
                cores = os.cpu_count()
                print(f"warning: other processes kept {busy:.2f} of {cores} cores busy: every figure is inflated")
            floor = []
            for i in range(args.warmup + 1000):
                t0 = time.perf_counter()
                await client.get("/healthz")
                if i >= args.warmup:
                    floor.append((time.perf_counter() - t0) * 1000)
            result["floor_healthz_ms"] = summary(floor)
            print(f"measuring (API pid {api.pid}, database {dbname})", flush=True)
            # CPU of this bench, the API and the database's backends serving them: the rest is other processes'.
            meter = CpuMeter({"bench": os.getpid(), "api": api.pid}, dbname)
            meter.start()
            for case, codes, warm in cases:
                t0 = time.monotonic()
                result[case.name] = await _measure(client, conn, case, codes, warm)
                result[case.name]["explain"] = await _explain(conn, case, result[case.name]["typical_code"])
                m = result[case.name]
                print(
                    f"  {case.name}: {m['codes']} codes in {time.monotonic() - t0:.0f} s, "
                    f"HTTP p50 {m['http_ms']['p50']:.2f} ms, SQL p50 {m['sql_ms']['p50']:.2f} ms",
                    flush=True,
                )
            # The same backward traces and the floor through a minimal HTTP/1.1 client on one raw keep-alive
            # socket: what the API costs without httpx's own overhead on the shared cores.
            result["minimal_client"] = await _minimal_client(base, token, cases[0][1], args.warmup)
            result["others_cpu_during"] = max(0.0, meter.stop()["other_cores"])
        result["api_peak_rss_mb"] = peak_rss_mb(api.pid)
    finally:
        if api is not None:
            stop([api])
        if conn is not None:
            await conn.close()
        if not args.keep:
            await drop_db(args.database_dsn, dbname)
    return result


def _goals(r: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(goal, measured, limit, unit) from the issue."""
    return [
        ("backward trace, API p50", r["backward"]["http_ms"]["p50"], 2.0, "ms"),
        ("backward trace, API p99", r["backward"]["http_ms"]["p99"], 10.0, "ms"),
        ("farm recall, API p50", r["recall"]["http_ms"]["p50"], 30.0, "ms"),
        ("backward trace, API / SQL (p50)", r["backward"]["ratio_p50"], 5.0, "×"),
        ("forward trace, API / SQL (p50)", r["forward"]["ratio_p50"], 5.0, "×"),
        ("farm recall, API / SQL (p50)", r["recall"]["ratio_p50"], 5.0, "×"),
    ]


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    g = r["graph"]
    print(
        f"\nlineage: {g['lots']:,} lots ({g['days']} days at {g['scale']:.0%} of the city's daily volume), "
        f"{g['edges']:,} edges, {g['events']:,} events, {g['operators']:,} operators; "
        f"database {g['db_bytes'] / 2**20:,.0f} MB; built in {g['build_s']:.0f} s; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(g["lots_by_kind"].items(), key=lambda kv: -kv[1]))
    print(f"  lots: {kinds}")
    print(f"  {'':<30} {'HTTP p50 / p99 / mean':>24} {'SQL p50 / p99 / mean':>24}", end="")
    print(f" {'HTTP/SQL':>9} {'lots':>6} {'KB':>6}")
    labels = {
        "backward": "backward trace (sale, up)",
        "forward": "forward trace (batch, down)",
        "recall": "farm recall (farm lot)",
    }
    for name, label in labels.items():
        m = r[name]
        h, s = m["http_ms"], m["sql_ms"]
        print(
            f"  {label:<30} {h['p50']:>7.2f} /{h['p99']:>7.2f} /{h['mean']:>7.2f} "
            f"{s['p50']:>7.2f} /{s['p99']:>7.2f} /{s['mean']:>7.2f} {m['ratio_p50']:>8.1f}× "
            f"{m['lots']['p50']:>6.0f} {m['response_bytes_p50'] / 1024:>6.0f}"
        )
    f = r["floor_healthz_ms"]
    print(f"  {'HTTP floor (GET /healthz)':<30} {f['p50']:>7.2f} /{f['p99']:>7.2f} /{f['mean']:>7.2f}")
    for name, label in (("backward", "backward, minimal client"), ("floor_healthz", "floor, minimal client")):
        m = r["minimal_client"][name]
        print(f"  {label:<30} {m['p50']:>7.2f} /{m['p99']:>7.2f} /{m['mean']:>7.2f}")
    for name in labels:
        e = r[name]["explain"]
        print(
            f"  EXPLAIN ANALYZE {name:<9} planning {e.get('planning_ms', float('nan')):.2f} ms, "
            f"execution {e.get('execution_ms', float('nan')):.2f} ms"
        )
    same = all(r[name]["http_body_equals_sql_text"] for name in labels)
    print(f"  HTTP bodies identical to the SQL statements' text: {'yes' if same else 'NO'}")
    print(f"  peak RSS of the API: {r['api_peak_rss_mb']:.0f} MB")
    print(
        f"  cores kept busy by other processes: {r['background_cpu']:.2f} before measuring, "
        f"{r['others_cpu_during']:.2f} while measuring (of {os.cpu_count()})"
    )
    top = r["recall_candidates"]
    low, high = top[-1]["downstream_lots"], top[0]["downstream_lots"]
    print(f"  farm recall: the {len(top)} farm lots with the largest downstream, {low:,}-{high:,} lots each")
    print("goals (issue 3):")
    for goal, value, limit, unit in _goals(r):
        verdict = "met" if value <= limit else f"missed by {value / limit:.1f}×"
        print(f"  {goal:<34} {value:>7.2f} {unit} (goal ≤ {limit:g} {unit}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lineage", description=__doc__.split("\n")[0])
    parser.add_argument("--lots", type=int, default=1_000_000, help="lots in the graph, at least (default 1000000)")
    parser.add_argument(
        "--days", type=int, default=0, help="spread the lots over this many days (default: the city's daily volume)"
    )
    parser.add_argument("--backward", type=int, default=2000, help="backward traces from sale codes (default 2000)")
    parser.add_argument("--forward", type=int, default=500, help="forward traces from slaughter batches (default 500)")
    parser.add_argument("--recall", type=int, default=50, help="farm recalls (default 50)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each series (default 200)")
    parser.add_argument("--seed", type=int, default=3, help="random seed of the graph and the samples (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (its name is printed)")
    add_runner_options(parser, "lineage")
    args = parser.parse_args()

    t0 = time.monotonic()
    result = asyncio.run(run(args))
    result["total_s"] = time.monotonic() - t0
    report(args, result)
    result["goals"] = [
        {"goal": goal, "value": value, "limit": limit, "unit": unit, "met": value <= limit}
        for goal, value, limit, unit in _goals(result)
    ]
    out = write_result("lineage", {"args": vars(args), "result": result}, args.out)
    print(f"\nwritten: {out} (total {result['total_s']:.0f} s)")
    if args.keep:
        print(f"kept database: {args.database_dsn}/{result['database']}")


if __name__ == "__main__":
    main()
