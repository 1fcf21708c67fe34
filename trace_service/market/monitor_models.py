"""The bodies of ``GET /v1/monitor/stock``, ``GET /v1/monitor/levels`` and ``GET /v1/public/market`` as
models, for the OpenAPI document. The services build the answers as plain dicts; these models describe
them (the tests validate real answers against them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Names(BaseModel):
    zh: str
    en: str


# -- stock ---------------------------------------------------------------------------------------------


class Cover(BaseModel):
    kg_on_hand: float = Field(description="kg in the active lots held now")
    kg_sold_per_day: float = Field(description="average retail kg sold a day over the sales days")
    days_of_cover: float | None = Field(description="kg on hand ÷ kg sold per day; null when nothing was sold")


class StockMarket(Cover):
    market: str = Field(description="the market's operator code (a tenant's stock counts for its parent)")
    market_name: str
    kind: str
    region: str
    region_name: str | None
    emergency_outlet: bool = Field(description="a designated emergency outlet (应急投放网点)")
    lots: int


class StockDistrict(Cover):
    region: str = Field(description="GB/T 2260 code of the markets' district")
    region_name: str | None
    markets: int


class StockProduct(Cover):
    product: str
    product_name: Names
    lots: int
    districts: list[StockDistrict]
    markets: list[StockMarket] = Field(description="most kg on hand first")


class SalesDays(BaseModel):
    from_: str = Field(alias="from")
    to: str
    days: int


class StockFilters(BaseModel):
    product: str | None
    market: str | None
    region: str | None
    emergency_outlet: bool | None


class MaxAge(BaseModel):
    pork: int
    produce: int


_STOCK_EXAMPLE: dict[str, Any] = {
    "as_of": "2026-11-25T09:00:00+08:00",
    "timezone": "Asia/Shanghai",
    "sales": {"from": "2026-11-18", "to": "2026-11-24", "days": 7},
    "max_age_days": {"pork": 7, "produce": 3},
    "filters": {"product": "PORK-CARCASS", "market": None, "region": None, "emergency_outlet": None},
    "products": [
        {
            "product": "PORK-CARCASS",
            "product_name": {"zh": "猪肉", "en": "Pork"},
            "kg_on_hand": 18250.5,
            "kg_sold_per_day": 9120.0,
            "days_of_cover": 2.0,
            "lots": 412,
            "districts": [
                {
                    "region": "442000",
                    "region_name": "中山市",
                    "markets": 2,
                    "kg_on_hand": 18250.5,
                    "kg_sold_per_day": 9120.0,
                    "days_of_cover": 2.0,
                }
            ],
            "markets": [
                {
                    "market": "442000200001",
                    "market_name": "中山市东升农产品批发市场",
                    "kind": "wholesale_market",
                    "region": "442000",
                    "region_name": "中山市",
                    "emergency_outlet": False,
                    "lots": 96,
                    "kg_on_hand": 12400.0,
                    "kg_sold_per_day": 0.0,
                    "days_of_cover": None,
                },
                {
                    "market": "442000300001",
                    "market_name": "中山市石岐综合市场",
                    "kind": "retail_market",
                    "region": "442000",
                    "region_name": "中山市",
                    "emergency_outlet": True,
                    "lots": 316,
                    "kg_on_hand": 5850.5,
                    "kg_sold_per_day": 9120.0,
                    "days_of_cover": 0.6,
                },
            ],
        }
    ],
}


class Stock(BaseModel):
    """Kg on hand per product, for the city (the product's own figures), per district and per market."""

    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"examples": [_STOCK_EXAMPLE]})

    as_of: str = Field(description="the moment of the reading, local time")
    timezone: str
    sales: SalesDays = Field(description="the finished days whose retail sales are averaged")
    max_age_days: MaxAge = Field(description="lots older than this (by category) are not counted as stock")
    filters: StockFilters
    products: list[StockProduct]


# -- levels --------------------------------------------------------------------------------------------


class LevelAlert(BaseModel):
    id: str
    rule: str
    rule_name: Names
    level: str = Field(description="the alert's own level: IV, III, II or I")
    severity: str
    status: str
    market: str = Field(description="a market's operator code, or `city` for a city-wide alert")
    market_name: str | None
    day: str
    behind: bool = Field(description="whether this alert makes the product's level")


class MarketRef(BaseModel):
    code: str
    name: str | None


class ProductLevel(BaseModel):
    product: str
    product_name: Names
    level: str | None = Field(description="none (null), IV, III, II or I")
    level_name: Names | None = Field(description="一般 general, 较大 significant, 重大 major, 特别重大 extraordinary")
    colour: str | None = Field(description="the warning colour of the level: blue, yellow, orange, red")
    since: str | None = Field(description="when the product reached this level (its emergency_level alert)")
    city_wide: bool = Field(description="a city-wide alert (stock_out, slaughter_drop) stands at the level")
    markets: list[MarketRef] = Field(description="the markets standing at the level or graver")
    alerts: list[LevelAlert] = Field(description="the standing market alerts of the product")


class LevelWindow(BaseModel):
    from_: str = Field(alias="from")
    to: str


class LevelThresholdsOut(BaseModel):
    window_days: int
    markets: dict[str, int] = Field(description="markets needed at a level (or graver) for the city to be at it")
    supply_drop: list[float]
    supply_surge: float
    price_spike: list[float]
    stock_out_sites: int
    slaughter_drop: float


class Levels(BaseModel):
    """The city's emergency level per product now, gravest first, and the alerts behind each."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2026-11-25T09:00:00+08:00",
                    "timezone": "Asia/Shanghai",
                    "window": {"from": "2026-11-24", "to": "2026-11-25"},
                    "thresholds": {
                        "window_days": 2,
                        "markets": {"IV": 1, "III": 2, "II": 2, "I": 2},
                        "supply_drop": [0.3, 0.5],
                        "supply_surge": 1.0,
                        "price_spike": [0.3, 0.5, 0.7, 1.0],
                        "stock_out_sites": 3,
                        "slaughter_drop": 0.3,
                    },
                    "products": [
                        {
                            "product": "PORK-CARCASS",
                            "product_name": {"zh": "猪肉", "en": "Pork"},
                            "level": "III",
                            "level_name": {"zh": "较大", "en": "significant"},
                            "colour": "yellow",
                            "since": "2026-11-25T05:02:11+08:00",
                            "city_wide": False,
                            "markets": [
                                {"code": "442000300001", "name": "中山市石岐综合市场"},
                                {"code": "442000300002", "name": "中山市小榄综合市场"},
                            ],
                            "alerts": [
                                {
                                    "id": "al_5b1f0c2d3e4a5968778695a4",
                                    "rule": "supply_drop",
                                    "rule_name": {"zh": "到货量下降", "en": "supply drop"},
                                    "level": "III",
                                    "severity": "warning",
                                    "status": "open",
                                    "market": "442000300001",
                                    "market_name": "中山市石岐综合市场",
                                    "day": "2026-11-25",
                                    "behind": True,
                                }
                            ],
                        }
                    ],
                }
            ]
        },
    )

    as_of: str
    timezone: str
    window: LevelWindow = Field(description="the local days whose unresolved market alerts stand for now")
    thresholds: LevelThresholdsOut
    products: list[ProductLevel]


# -- the public bulletin -------------------------------------------------------------------------------


class BulletinDay(BaseModel):
    day: str
    kg_sold: float | None = Field(description="retail kg sold in the city; null when too few sellers to publish")
    avg_price: float | None = Field(description="kg-weighted average retail price, CNY (元) per kg")
    head: int | None = Field(description="pigs slaughtered in the city (live pigs only)")


class BulletinProduct(BaseModel):
    product: str
    product_name: Names
    unit: str = Field(description="`kg`, or `head` for live pigs")
    today: BulletinDay = Field(description="the bulletin's date")
    price_change: float | None = Field(description="average price against the day before, as a fraction")
    days: list[BulletinDay] = Field(description="the 30 days up to the date, oldest first")


class Bulletin(BaseModel):
    """The city's daily retail volume and average price per product, and their last 30 days. City-wide
    figures only: a product sold by fewer than `min_sellers` operators on a day is not published for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "date": "2026-11-24",
                    "timezone": "Asia/Shanghai",
                    "from": "2026-10-26",
                    "min_sellers": 3,
                    "products": [
                        {
                            "product": "VEG-CAIXIN",
                            "product_name": {"zh": "菜心", "en": "Choy sum"},
                            "unit": "kg",
                            "today": {"day": "2026-11-24", "kg_sold": 10520.5, "avg_price": 7.86, "head": None},
                            "price_change": 0.021,
                            "days": [{"day": "2026-11-24", "kg_sold": 10520.5, "avg_price": 7.86, "head": None}],
                        }
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    date: str
    timezone: str
    from_: str = Field(alias="from", description="the first day of the series")
    min_sellers: int
    products: list[BulletinProduct]
