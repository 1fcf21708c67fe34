"""The body of ``GET /v1/monitor/supply`` as models, for the OpenAPI document.

``market/service.py`` builds the answer; these models describe it and are not used to build it
(``tests/test_openapi.py`` validates real answers against their schemas).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Baseline(BaseModel):
    value: float = Field(description="the same-weekday median of the baseline weeks")
    points: int = Field(description="how many of those weeks had data")
    low: float | None = Field(description="the lower edge of the band")
    high: float | None = Field(description="the upper edge of the band (null where only a drop is judged)")


class DayBaselines(BaseModel):
    kg_received: Baseline | None = Field(description="null while too few weeks have data")
    head: Baseline | None


class MarketAlertRef(BaseModel):
    id: str
    rule: str
    level: str | None = Field(description="IV, III, II or I")
    severity: str
    status: str


class SupplyDay(BaseModel):
    day: str = Field(description="local date, YYYY-MM-DD", examples=["2026-11-25"])
    kg_received: float | None
    kg_sold: float | None
    head: int = Field(description="pigs slaughtered (city series of pork)")
    sales: int = Field(description="retail sales counted")
    avg_price: float | None = Field(description="average retail price, CNY per kg; null without sales")
    baseline: DayBaselines
    alerts: list[MarketAlertRef] = Field(description="market alerts about this market, product and day")


class SupplySeries(BaseModel):
    market: str = Field(description="a market's operator code, or `city`")
    market_name: str | None
    product: str
    days: list[SupplyDay]


class Thresholds(BaseModel):
    baseline_weeks: int
    min_baseline_points: int
    supply_drop: list[float] = Field(description="fractional drops for levels IV and III")
    supply_surge: float
    price_spike: list[float] = Field(description="fractional rises for levels IV, III, II and I")
    slaughter_drop: float


class Supply(BaseModel):
    """Daily figures per market and product, with the same-weekday baseline, its band and the alerts."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-11-25",
                    "to": "2026-11-25",
                    "timezone": "Asia/Shanghai",
                    "product": "pork.carcass",
                    "market": None,
                    "thresholds": {
                        "baseline_weeks": 4,
                        "min_baseline_points": 3,
                        "supply_drop": [0.2, 0.4],
                        "supply_surge": 0.5,
                        "price_spike": [0.1, 0.2, 0.3, 0.5],
                        "slaughter_drop": 0.3,
                    },
                    "series": [
                        {
                            "market": "442000200001",
                            "market_name": "中山市农产品批发市场",
                            "product": "pork.carcass",
                            "days": [
                                {
                                    "day": "2026-11-25",
                                    "kg_received": 3180.0,
                                    "kg_sold": 212.4,
                                    "head": 0,
                                    "sales": 241,
                                    "avg_price": 32.6,
                                    "baseline": {
                                        "kg_received": {"value": 3050.0, "points": 4, "low": 2440.0, "high": 4575.0},
                                        "head": None,
                                    },
                                    "alerts": [],
                                }
                            ],
                        }
                    ],
                }
            ]
        },
    )

    from_: str = Field(alias="from", description="first local day")
    to: str = Field(description="last local day")
    timezone: str
    product: str | None = Field(description="the product asked for, or null")
    market: str | None = Field(description="the market asked for, or null")
    thresholds: Thresholds
    series: list[SupplySeries]
