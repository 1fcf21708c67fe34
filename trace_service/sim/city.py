"""A seeded Zhongshan: its operators and the standing daily trade between them. Pure: no I/O.

``build_city(seed, scale)`` always gives the same city for the same seed and scale. The city holds the
*nominal* flows of an ordinary day; :mod:`trace_service.sim.events` realises each day with noise.

- **Farms** across the 中南区 ASF zone: mostly Guangdong (肇庆 4412xx, 云浮 4453xx, 江门 4407xx, 清远 4418xx),
  some Hunan (43), Guangxi (45) and Jiangxi (36), each sending one truck of pigs a day to its designated
  slaughterhouse; a few farms outside the zone (Shandong, Henan) exist only for the ``origin_outside_zone``
  fault. Farm codes are region + 4 digits; ear tags are ``1`` + region + farm slot (2) + day number (4)
  + pig number (2), so they are unique per farm and day.
- **Slaughterhouses** (定点屠宰厂) ship carcass lots to the pork wholesalers of the wholesale markets and to
  supermarkets.
- **Wholesale markets** (批发市场) with tenant wholesalers (registered with ``parent``): pork wholesalers
  sell to pork stalls and canteens; vegetable wholesalers, each handling one or two products, receive
  from planting bases and sell to vegetable stalls, supermarkets and canteens.
- **Wet markets** (农贸市场) with stalls (retailers with ``parent``), **supermarkets**, **canteens**.
- **Imports**: importers (进口商) clear frozen pork and beef at a port of the Pearl River Delta, keep it in
  one of the city's cold stores (冷库) and sell it to the frozen-meat wholesalers (冻品批发商, tenants of
  the wholesale markets), who sell part of it on to supermarkets. A small share of the city's meat; drawn
  from a generator of its own, so that the rest of the city is the same with or without it.

Only part of what a wholesaler receives goes to traced buyers (the rest goes to restaurants and
neighbouring cities, which are not nodes); ``TRACED_SHARE_VEG`` is that part for vegetables. It leaves
room for a supply shock at a wholesale market without starving the stalls downstream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from trace_service.contract.regions import is_known_region, region_name

CITY_REGION = "442000"  # 中山市
REGULATOR = "442000900001"  # 中山市市场监督管理局: the operator code regulator events carry
# Twelve-digit operator codes are region + kind digit + a 5-digit serial. The demo operators of
# events/operators.json (scenarios, examples, README) use serials below 10000; the simulated city numbers
# from 10001, so that a simulated city and the replayed chains share one database without sharing a code.
SERIAL_BASE = 10_000
TRACED_SHARE_VEG = 0.35  # of a vegetable wholesaler's receipts, the part sold to traced buyers

# Prefectures (first 4 digits) whose counties host farms and bases, with weights.
FARM_PREFECTURES: tuple[tuple[str, float], ...] = (
    ("4412", 4.0),  # 肇庆
    ("4453", 3.0),  # 云浮
    ("4407", 3.0),  # 江门
    ("4418", 3.0),  # 清远
    ("4304", 1.0),  # 湖南 衡阳
    ("4311", 1.0),  # 湖南 永州
    ("4508", 1.0),  # 广西 贵港
    ("4509", 1.0),  # 广西 玉林
    ("3607", 1.0),  # 江西 赣州
)
OUTSIDE_ZONE_PREFECTURES: tuple[str, ...] = ("3713", "4113")  # 山东 临沂, 河南 南阳
BASE_PREFECTURES: tuple[tuple[str, float], ...] = (
    ("4407", 4.0),  # 江门 (开平, 台山 …)
    ("4412", 3.0),  # 肇庆
    ("4418", 2.0),  # 清远
    ("4453", 1.0),  # 云浮
    ("4413", 2.0),  # 惠州
    ("4401", 1.0),  # 广州
    ("4311", 0.5),  # 湖南 永州 (winter vegetables)
    ("4503", 0.5),  # 广西 桂林
)
PLATES = {"44": "粤", "43": "湘", "45": "桂", "36": "赣", "37": "鲁", "41": "豫", "35": "闽", "46": "琼"}
TOWNS = (
    "石岐",
    "东区",
    "西区",
    "南区",
    "五桂山",
    "火炬",
    "小榄",
    "古镇",
    "横栏",
    "东升",
    "港口",
    "沙溪",
    "大涌",
    "南头",
    "东凤",
    "阜沙",
    "黄圃",
    "南朗",
    "三角",
    "民众",
    "坦洲",
    "三乡",
    "板芙",
    "神湾",
)
FARM_WORDS = ("兴旺", "丰源", "温氏", "绿丰", "宏达", "正大", "金穗", "永盛", "新希望", "牧原", "广联", "康顺")
BASE_WORDS = ("绿源", "丰收", "田园", "金土地", "青禾", "鲜达", "百果", "润丰", "农耕", "嘉禾", "翠绿", "好味")
SUPERMARKETS = ("壹加壹", "华润万家", "永辉", "大润发", "沃尔玛", "百佳", "天虹", "美宜佳")
CANTEENS = (
    "第一中学",
    "实验小学",
    "人民医院",
    "中医院",
    "职业技术学院",
    "纪念中学",
    "中心小学",
    "妇幼保健院",
    "外国语学校",
    "技师学院",
    "第二中学",
    "镇政府",
)


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    category: str  # pork | produce
    wholesale_price: float  # CNY/kg
    retail_price: float


VEGETABLES: tuple[Product, ...] = (
    Product("VEG-CAIXIN", "菜心", "produce", 4.2, 8.0),
    Product("VEG-SHENGCAI", "生菜", "produce", 3.0, 6.0),
    Product("VEG-DABAICAI", "大白菜", "produce", 1.6, 3.5),
    Product("VEG-FANQIE", "番茄", "produce", 3.8, 7.0),
    Product("VEG-HUANGGUA", "黄瓜", "produce", 3.0, 6.0),
    Product("VEG-TUDOU", "土豆", "produce", 2.2, 4.5),
    Product("VEG-LUOBO", "白萝卜", "produce", 1.4, 3.0),
    Product("VEG-JIELAN", "芥兰", "produce", 4.5, 8.0),
    Product("VEG-TONGCAI", "通菜", "produce", 3.0, 6.0),
    Product("VEG-QIEZI", "茄子", "produce", 3.2, 6.5),
    Product("VEG-QINGJIAO", "青椒", "produce", 4.0, 8.0),
    Product("VEG-DONGGUA", "冬瓜", "produce", 1.2, 3.0),
)
PORK = Product("PORK-CARCASS", "猪胴体(白条)", "pork", 24.0, 32.0)
PRODUCTS: dict[str, Product] = {p.code: p for p in (*VEGETABLES, PORK)}

# Imported frozen meat, with the countries each comes from (weights roughly their share of China's imports)
# and the ports that clear it for Zhongshan.
FROZEN_PORK = Product("PORK-FROZEN", "冷冻猪肉", "imported", 19.0, 27.0)
FROZEN_BEEF = Product("BEEF-FROZEN", "冷冻牛肉", "imported", 46.0, 68.0)
IMPORTED: dict[str, tuple[Product, tuple[tuple[str, float], ...]]] = {
    FROZEN_PORK.code: (
        FROZEN_PORK,
        (("BR", 4.0), ("ES", 4.0), ("NL", 1.5), ("DK", 1.5), ("CA", 1.0), ("US", 1.0), ("CL", 1.0), ("FR", 0.5)),
    ),
    FROZEN_BEEF.code: (
        FROZEN_BEEF,
        (("BR", 5.0), ("AR", 2.0), ("UY", 1.5), ("AU", 1.5), ("NZ", 1.0), ("US", 0.5)),
    ),
}
ENTRY_PORTS: tuple[tuple[str, float], ...] = (("南沙港", 5.0), ("蛇口港", 3.0), ("黄埔港", 2.0))
IMPORTER_WORDS = ("粤海", "中粮", "华南", "珠江", "南联", "恒通")


@dataclass(frozen=True)
class Scale:
    """How big a city: head and tonnes a day, and how many operators of each kind."""

    name: str
    pigs_per_day: int
    truck: tuple[int, int]  # pigs per truck (one farm, one certificate, one slaughter batch)
    slaughterhouses: int
    wholesale_markets: int
    pork_wholesalers: int  # per wholesale market
    veg_wholesalers: int  # per wholesale market
    wet_markets: int
    pork_stalls: int  # per wet market
    veg_stalls: int  # per wet market
    supermarkets: int
    canteens: int
    sales_per_stall_lot: int  # traced sales (label-scale receipts) per stall lot and day
    sales_per_supermarket_lot: int
    untraced_veg_kg: float  # a vegetable wholesaler's receipts of a product nobody traced buys
    importers: int = 1
    cold_stores: int = 1
    frozen_wholesalers: int = 1  # per wholesale market
    import_lots: int = 1  # standing import flows: lots cleared through customs a day, at --imports 1


SCALES: dict[str, Scale] = {
    "tiny": Scale("tiny", 300, (20, 40), 2, 2, 1, 3, 2, 2, 3, 1, 3, 3, 5, 300.0),
    "small": Scale("small", 600, (30, 60), 3, 2, 4, 15, 8, 5, 10, 5, 60, 3, 10, 800.0, import_lots=2),
    "city": Scale(
        "city",
        4000,
        (35, 70),
        4,
        3,
        25,
        120,
        150,
        12,
        24,
        40,
        1500,
        5,
        20,
        1500.0,
        importers=6,
        cold_stores=4,
        frozen_wholesalers=3,
        import_lots=8,
    ),
}


@dataclass(frozen=True)
class Operator:
    code: str
    name: str
    kind: str  # the contract's operator kinds
    region: str
    parent: str | None = None

    def registration(self) -> dict[str, Any]:
        """The body of ``POST /v1/operators``."""
        body: dict[str, Any] = {"code": self.code, "name": self.name, "kind": self.kind, "region": self.region}
        if self.parent:
            body["parent"] = self.parent
        return body


@dataclass(frozen=True)
class Farm:
    operator: Operator
    farm_code: str
    slot: int  # 1..99: the farm's place among the farms of its region, in its ear tags
    slaughterhouse: str
    pigs_per_day: int
    in_zone: bool = True

    @property
    def region(self) -> str:
        return self.operator.region

    @property
    def in_province(self) -> bool:
        return self.region[:2] == CITY_REGION[:2]


@dataclass(frozen=True)
class Supply:
    """A vegetable wholesaler's nominal daily receipts of one product, and the bases they come from."""

    wholesaler: str
    market: str
    product: str
    bases: tuple[tuple[str, float], ...]  # (base code, kg)

    @property
    def kg(self) -> float:
        return sum(kg for _, kg in self.bases)


@dataclass(frozen=True)
class Order:
    """A standing daily order: ``buyer`` takes ``kg`` of ``product`` from ``seller`` every day."""

    seller: str
    buyer: str
    product: str
    kg: float


@dataclass(frozen=True)
class ImportFlow:
    """An importer's standing trade: a lot of ``product`` of about ``kg`` a day to ``wholesaler``, kept in
    ``store`` between the port and the market."""

    importer: str
    store: str
    product: str
    wholesaler: str
    kg: float


@dataclass
class City:
    seed: int
    scale: Scale
    tag: str  # two characters of [0-9A-Z] in every lot code, voucher and certificate of this seed
    operators: list[Operator] = field(default_factory=list)  # parents before their tenants
    farms: list[Farm] = field(default_factory=list)
    outside_farms: list[Farm] = field(default_factory=list)
    bases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # base code -> products it grows
    slaughterhouses: list[str] = field(default_factory=list)
    wholesale_markets: list[str] = field(default_factory=list)
    wet_markets: list[str] = field(default_factory=list)
    pork_wholesalers: list[str] = field(default_factory=list)
    veg_wholesalers: list[str] = field(default_factory=list)
    pork_stalls: list[str] = field(default_factory=list)
    veg_stalls: list[str] = field(default_factory=list)
    supermarkets: list[str] = field(default_factory=list)
    canteens: list[str] = field(default_factory=list)
    # Which buyers a slaughterhouse ships carcasses to, with their share of its output (wholesalers), and
    # the supermarkets' fixed daily pork.
    carcass_buyers: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    supermarket_pork: dict[str, tuple[str, float]] = field(default_factory=dict)  # supermarket -> (plant, kg)
    supplies: list[Supply] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    price_factor: dict[str, float] = field(default_factory=dict)  # seller -> its prices against the city's
    regulator: str = REGULATOR
    importers: list[str] = field(default_factory=list)
    cold_stores: list[str] = field(default_factory=list)
    frozen_wholesalers: list[str] = field(default_factory=list)
    # Who sells imported meat to whom: the importer's cold store, and the supermarkets of each frozen-meat
    # wholesaler.
    cold_store_of: dict[str, str] = field(default_factory=dict)  # importer -> its cold store
    frozen_buyers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # wholesaler -> supermarkets
    import_flows: list[ImportFlow] = field(default_factory=list)

    @property
    def by_code(self) -> dict[str, Operator]:
        return {op.code: op for op in self.operators}

    def poster(self, operator: str) -> str | None:
        """Whose key reports this operator's events: its market for a tenant, itself otherwise; None for
        the regulator (an admin or regulator key)."""
        if operator == self.regulator:
            return None
        op = self.by_code.get(operator)
        return op.parent or op.code if op else operator

    def posting_operators(self) -> list[str]:
        """The operators that need a key: everyone without a parent."""
        return [op.code for op in self.operators if not op.parent]

    def summary(self) -> dict[str, int | float]:
        kinds: dict[str, int] = {}
        for op in self.operators:
            kinds[op.kind] = kinds.get(op.kind, 0) + 1
        return {
            **kinds,
            "pigs_per_day": sum(f.pigs_per_day for f in self.farms),
            "veg_tonnes_per_day": round(sum(s.kg for s in self.supplies) / 1000, 1),
        }


def seed_tag(seed: int) -> str:
    """Two base-36 characters derived from the seed: lot codes of different seeds do not collide."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n = seed % (36 * 36)
    return alphabet[n // 36] + alphabet[n % 36]


def counties(prefecture: str) -> list[str]:
    """The county-level codes of a prefecture that the region table knows (4412 → 441202, 441203 …)."""
    found = [f"{prefecture}{n:02d}" for n in range(1, 100) if is_known_region(f"{prefecture}{n:02d}")]
    return found or [f"{prefecture}00"]


def _weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def build_city(seed: int, scale: str | Scale = "small") -> City:
    """The city of this seed at this scale."""
    sc = SCALES[scale] if isinstance(scale, str) else scale
    rng = random.Random(f"trace-service/sim/city/{seed}/{sc.name}")  # noqa: S311 - reproducible, not secret
    city = City(seed=seed, scale=sc, tag=seed_tag(seed))
    county_cache: dict[str, list[str]] = {}

    def county(prefecture: str) -> str:
        if prefecture not in county_cache:
            county_cache[prefecture] = counties(prefecture)
        return rng.choice(county_cache[prefecture])

    def add(op: Operator) -> Operator:
        city.operators.append(op)
        return op

    # -- the city's own nodes: slaughterhouses, markets and their tenants, supermarkets, canteens ---------
    towns = list(TOWNS)
    rng.shuffle(towns)
    for i in range(1, sc.slaughterhouses + 1):
        op = add(
            Operator(
                f"{CITY_REGION}1{SERIAL_BASE + i:05d}",
                f"中山市{towns[i % len(towns)]}生猪定点屠宰厂",
                "slaughterhouse",
                CITY_REGION,
            )
        )
        city.slaughterhouses.append(op.code)
    market_names = ["东升农产品批发市场", "中山农副产品批发市场", "小榄农产品批发市场", "坦洲农产品批发市场"]
    for m in range(1, sc.wholesale_markets + 1):
        market = add(
            Operator(f"{CITY_REGION}2000{m:03d}", f"中山市{market_names[(m - 1) % 4]}", "wholesale_market", CITY_REGION)
        )
        city.wholesale_markets.append(market.code)
        for w in range(1, sc.pork_wholesalers + sc.veg_wholesalers + 1):
            pork = w <= sc.pork_wholesalers
            kind = "猪肉批发" if pork else "蔬菜批发"
            op = add(
                Operator(
                    f"{CITY_REGION}2{m:03d}{w:03d}", f"{kind}商{m}{w:03d}号", "wholesaler", CITY_REGION, market.code
                )
            )
            (city.pork_wholesalers if pork else city.veg_wholesalers).append(op.code)
    for m in range(1, sc.wet_markets + 1):
        town = towns[m % len(towns)]
        suffix = "" if m <= len(towns) else str((m - 1) // len(towns) + 1)
        market = add(
            Operator(f"{CITY_REGION}3000{m:03d}", f"中山市{town}{suffix}综合市场", "retail_market", CITY_REGION)
        )
        city.wet_markets.append(market.code)
        for s in range(1, sc.pork_stalls + sc.veg_stalls + 1):
            pork = s <= sc.pork_stalls
            op = add(
                Operator(
                    f"{CITY_REGION}3{m:03d}{s:03d}",
                    f"{town}{suffix}市场{s}号{'猪肉' if pork else '蔬菜'}摊",
                    "retailer",
                    CITY_REGION,
                    market.code,
                )
            )
            (city.pork_stalls if pork else city.veg_stalls).append(op.code)
    for i in range(1, sc.supermarkets + 1):
        op = add(
            Operator(
                f"{CITY_REGION}4{SERIAL_BASE + i:05d}",
                f"{SUPERMARKETS[i % len(SUPERMARKETS)]}中山{towns[i % len(towns)]}店",
                "supermarket",
                CITY_REGION,
            )
        )
        city.supermarkets.append(op.code)
    for i in range(1, sc.canteens + 1):
        town = towns[i % len(towns)]
        op = add(
            Operator(
                f"{CITY_REGION}6{SERIAL_BASE + i:05d}",
                f"中山市{town}{CANTEENS[i % len(CANTEENS)]}食堂{i}",
                "canteen",
                CITY_REGION,
            )
        )
        city.canteens.append(op.code)
    for code in (
        *city.pork_wholesalers,
        *city.veg_wholesalers,
        *city.pork_stalls,
        *city.veg_stalls,
        *city.supermarkets,
    ):
        city.price_factor[code] = round(rng.uniform(0.93, 1.07), 3)

    # -- farms: one truck a day each, to a designated slaughterhouse --------------------------------------
    slots: dict[str, int] = {}

    def farm(prefecture: str, pigs: int, in_zone: bool) -> Farm:
        region = county(prefecture)
        slots[region] = slots.get(region, 0) + 1
        slot = slots[region]
        code = f"{region}0{SERIAL_BASE + slot:05d}"
        place = region_name(region) or ""
        op = add(Operator(code, f"{place}{rng.choice(FARM_WORDS)}生猪养殖场{slot}", "farm", region))
        plant = rng.choice(city.slaughterhouses)
        return Farm(op, f"{region}{slot:04d}", slot, plant, pigs, in_zone)

    lo, hi = sc.truck
    remaining = sc.pigs_per_day
    while remaining > 0:
        pigs = min(remaining, rng.randint(lo, hi)) if remaining > hi else remaining
        city.farms.append(farm(_weighted(rng, FARM_PREFECTURES), pigs, True))
        remaining -= pigs
    for prefecture in OUTSIDE_ZONE_PREFECTURES:
        city.outside_farms.append(farm(prefecture, rng.randint(lo, hi), False))

    # -- carcass buyers: each pork wholesaler and supermarket has its slaughterhouse ------------------------
    plants = city.slaughterhouses
    wholesalers = list(city.pork_wholesalers)
    rng.shuffle(wholesalers)
    buyers: dict[str, list[tuple[str, float]]] = {p: [] for p in plants}
    for j, code in enumerate(wholesalers):
        buyers[plants[j % len(plants)]].append((code, rng.uniform(0.7, 1.3)))
    for j, plant in enumerate(plants):
        if not buyers[plant]:  # fewer wholesalers than plants: a wholesaler buys from two plants
            buyers[plant].append((wholesalers[j % len(wholesalers)], 1.0))
        total = sum(w for _, w in buyers[plant])
        city.carcass_buyers[plant] = [(b, w / total) for b, w in buyers[plant]]
    for code in city.supermarkets:
        city.supermarket_pork[code] = (rng.choice(city.slaughterhouses), round(rng.uniform(150, 400), 1))

    # -- pork orders from the pork wholesalers -------------------------------------------------------------
    for code in city.pork_stalls:
        city.orders.append(Order(rng.choice(city.pork_wholesalers), code, PORK.code, round(rng.uniform(50, 140), 1)))
    for code in city.canteens:
        city.orders.append(Order(rng.choice(city.pork_wholesalers), code, PORK.code, round(rng.uniform(20, 60), 1)))

    # -- vegetables: what each wholesaler handles, who buys it, where it is grown ---------------------------
    handles: dict[str, list[str]] = {}
    products = [p.code for p in VEGETABLES]
    for i, code in enumerate(city.veg_wholesalers):
        first = products[i % len(products)]  # every product has wholesalers in a big enough city
        handles[code] = [first] + ([rng.choice([p for p in products if p != first])] if rng.random() < 0.4 else [])
    sellers_of: dict[str, list[str]] = {p: [w for w, ps in handles.items() if p in ps] for p in products}

    def veg_orders(buyer: str, count: tuple[int, int], kg: tuple[float, float]) -> None:
        for product in rng.sample(products, rng.randint(*count)):
            if sellers_of[product]:
                seller = rng.choice(sellers_of[product])
                city.orders.append(Order(seller, buyer, product, round(rng.uniform(*kg), 1)))

    for code in city.veg_stalls:
        veg_orders(code, (3, 6), (9.0, 35.0))
    for code in city.supermarkets:
        veg_orders(code, (8, 12), (70.0, 260.0))
    for code in city.canteens:
        veg_orders(code, (3, 6), (7.0, 26.0))

    traced: dict[tuple[str, str], float] = {}
    for o in city.orders:
        if o.product != PORK.code:
            traced[(o.seller, o.product)] = traced.get((o.seller, o.product), 0.0) + o.kg
    bases_of: dict[str, list[str]] = {p: [] for p in products}
    base_slots: dict[str, int] = {}
    n_bases = max(len(products), round(sum(len(ps) for ps in handles.values()) * 1.2))
    for i in range(n_bases):
        region = county(_weighted(rng, BASE_PREFECTURES))
        base_slots[region] = base_slots.get(region, 0) + 1
        code = f"{region}5{SERIAL_BASE + base_slots[region]:05d}"
        grows = [products[i % len(products)]]
        grows += rng.sample([p for p in products if p not in grows], rng.randint(0, 2))
        add(
            Operator(
                code,
                f"{region_name(region) or ''}{rng.choice(BASE_WORDS)}蔬菜种植基地{base_slots[region]}",
                "planting_base",
                region,
            )
        )
        city.bases[code] = tuple(grows)
        for p in grows:
            bases_of[p].append(code)
    ops = city.by_code
    for wholesaler, ps in handles.items():
        market_code = ops[wholesaler].parent or ""
        for p in ps:
            kg = traced.get((wholesaler, p), 0.0) / TRACED_SHARE_VEG or sc.untraced_veg_kg
            growers = rng.sample(bases_of[p], min(len(bases_of[p]), rng.randint(1, 3)))
            weights = [rng.uniform(0.5, 1.5) for _ in growers]
            total = sum(weights)
            city.supplies.append(
                Supply(
                    wholesaler,
                    market_code,
                    p,
                    tuple((b, round(kg * w / total, 1)) for b, w in zip(growers, weights, strict=True)),
                )
            )
    _add_imports(city)
    return city


def _add_imports(city: City) -> None:
    """Importers, the city's cold stores and the frozen-meat wholesalers, from a generator of their own (the
    rest of the city does not change with them). Appended last: every parent is already registered."""
    sc = city.scale
    rng = random.Random(f"trace-service/sim/city/imports/{city.seed}/{sc.name}")  # noqa: S311 - reproducible
    towns = list(TOWNS)
    rng.shuffle(towns)
    for i in range(1, sc.cold_stores + 1):
        code = f"{CITY_REGION}8{SERIAL_BASE + i:05d}"
        city.operators.append(Operator(code, f"中山市{towns[i % len(towns)]}冷链物流冷库", "cold_store", CITY_REGION))
        city.cold_stores.append(code)
    for i in range(1, sc.importers + 1):
        code = f"{CITY_REGION}7{SERIAL_BASE + i:05d}"
        name = f"中山市{IMPORTER_WORDS[i % len(IMPORTER_WORDS)]}食品进出口有限公司"
        city.operators.append(Operator(code, name, "importer", CITY_REGION))
        city.importers.append(code)
        city.cold_store_of[code] = city.cold_stores[(i - 1) % len(city.cold_stores)]
    first = sc.pork_wholesalers + sc.veg_wholesalers + 1  # after the market's other tenants
    for m, market in enumerate(city.wholesale_markets, start=1):
        for w in range(first, first + sc.frozen_wholesalers):
            code = f"{CITY_REGION}2{m:03d}{w:03d}"
            city.operators.append(Operator(code, f"冻品批发商{m}{w:03d}号", "wholesaler", CITY_REGION, market))
            city.frozen_wholesalers.append(code)
            city.price_factor[code] = round(rng.uniform(0.93, 1.07), 3)
    for i, code in enumerate(city.frozen_wholesalers):
        # Each wholesaler's supermarkets: one to three, every supermarket with at least one supplier.
        mine = [s for j, s in enumerate(city.supermarkets) if j % len(city.frozen_wholesalers) == i]
        extra = rng.sample(city.supermarkets, min(len(city.supermarkets), rng.randint(0, 2)))
        city.frozen_buyers[code] = tuple(dict.fromkeys(mine + extra))[:3] or tuple(city.supermarkets[:1])
    for i in range(sc.import_lots):
        importer = city.importers[i % len(city.importers)]
        product = FROZEN_PORK.code if i % 2 == 0 else FROZEN_BEEF.code
        wholesaler = city.frozen_wholesalers[i % len(city.frozen_wholesalers)]
        flow = ImportFlow(importer, city.cold_store_of[importer], product, wholesaler, round(rng.uniform(2500, 5000)))
        city.import_flows.append(flow)
