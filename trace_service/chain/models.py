"""The bodies the lineage endpoints answer with, as models: a lot, its trace, a recall, the consumer's view.

The trace and the recall are rendered to JSON by Postgres (``chain/reads.py``) and the lot and
public views by ``chain/service.py``; these models describe those answers in the OpenAPI document and
are not used to build them. ``tests/test_openapi.py`` validates real answers against the schemas
generated from them, so a field added on one side and not the other fails a test.

Times are RFC 3339 strings with an offset (Postgres renders ``timestamptz`` in its session time zone;
the consumer's view in Asia/Shanghai).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LotStatus = Literal["active", "stopped", "exhausted", "disposed", "unresolved"]
LOT_KINDS = "live_pigs, slaughter_batch, carcass, produce, received, sale; null while unresolved"
CheckResult = Literal["pass", "fail", "unknown"]

_PIG_LOT = "PK2026112500101"
_BATCH = "SB2026112500001"
_WHOLESALE = "WS2026112500318"
_TIME = "2026-11-25T05:10:00+08:00"


class Head(BaseModel):
    """Head counts of a lot of live pigs or a slaughter batch."""

    in_: int = Field(alias="in", description="heads brought in")
    out: int = Field(description="heads moved on (slaughtered, shipped, dead on arrival)")
    on_hand: int


class LotFact(BaseModel):
    """A fact recorded on the lot (a test, an ASF result, a disposal, a hold); the event's own data fields
    (``test``, ``method``, ``reason``, ...) follow the four named ones."""

    model_config = ConfigDict(extra="allow")

    fact: str = Field(description="test, asf, disposed, held, released, ...", examples=["test"])
    result: str | None = Field(description="pass, fail, negative, positive, or null", examples=["pass"])
    occurred_at: str = Field(description="RFC 3339 with offset", examples=[_TIME])
    event_id: str = Field(description="the event that recorded it")


class _LotCore(BaseModel):
    code: str = Field(description="the lot or sale code", examples=[_PIG_LOT])
    kind: str | None = Field(description=LOT_KINDS, examples=["carcass"])
    product_code: str | None = Field(examples=["pork.carcass"])
    product_name: str | None = Field(examples=["白条猪肉（片猪肉）"])
    holder: str | None = Field(description="operator code of the lot's holder (contract section 7)")
    holder_name: str | None
    status: LotStatus
    kg_in: float
    kg_out: float
    kg_on_hand: float
    kg_sold: float | None
    head: Head | None = Field(description="only for lots counted in heads (live pigs, slaughter batches)")
    origin_region: str | None = Field(description="6-digit region code (GB/T 2260)", examples=["445321"])
    created_at: str | None = Field(description="when its creating event occurred; null while unresolved")
    created_by_event: str | None = Field(description="the event_id that created it; null while unresolved")


class LotView(_LotCore):
    """``GET /v1/lots/{code}``: the lot, its documents and the facts recorded on it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": _PIG_LOT,
                    "kind": "carcass",
                    "product_code": "pork.carcass",
                    "product_name": "白条猪肉（片猪肉）",
                    "holder": "442000100001",
                    "holder_name": "中山市定点屠宰厂",
                    "status": "exhausted",
                    "kg_in": 318.0,
                    "kg_out": 318.0,
                    "kg_on_hand": 0.0,
                    "kg_sold": 0.0,
                    "head": None,
                    "origin_region": "445321",
                    "created_at": "2026-11-25T05:10:00+08:00",
                    "created_by_event": "37d1e5c9-e2ce-4280-9d46-36a7bcaf7947",
                    "documents": {
                        "quality_cert_number": "ZSPZ-20261125-0042",
                        "product_quarantine_cert_number": "4420C2611250518",
                    },
                    "facts": [
                        {
                            "fact": "test",
                            "result": "pass",
                            "occurred_at": "2026-11-25T06:20:00+08:00",
                            "event_id": "2873a4ed-9bf1-4300-a515-24484450c171",
                            "test": "ractopamine",
                            "method": "胶体金试纸条 colloidal gold strip",
                        }
                    ],
                }
            ]
        }
    )

    documents: dict[str, Any] = Field(description="certificate and voucher numbers the events stated")
    facts: list[LotFact]


class TraceLot(_LotCore):
    depth: int = Field(description="steps from the root lot (0 for the root)")


class TraceEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="parent lot code")
    to: str = Field(description="child lot code")
    kg: float | None
    head: int | None
    kind: str = Field(description="intake, transform, trade or sale", examples=["trade"])
    event_id: str
    pending: bool = Field(
        description="a buyer's link not yet confirmed by the seller's shipment (regulators only see these)"
    )


class TraceEvent(BaseModel):
    event_id: str
    event_type: str
    occurred_at: str
    operator: str


class Trace(BaseModel):
    """``GET /v1/lots/{code}/trace``: the lots reached, the edges between them and the events behind them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "root": _WHOLESALE,
                    "direction": "up",
                    "max_depth": 20,
                    "lots": [
                        {
                            "code": _WHOLESALE,
                            "kind": "received",
                            "product_code": "pork.carcass",
                            "product_name": "白条猪肉（片猪肉）",
                            "holder": "442000500001",
                            "holder_name": "中山市肉类批发行",
                            "status": "active",
                            "kg_in": 318.0,
                            "kg_out": 0.0,
                            "kg_on_hand": 318.0,
                            "kg_sold": 0.0,
                            "head": None,
                            "origin_region": "445321",
                            "created_at": "2026-11-25T06:02:00+08:00",
                            "created_by_event": "4e3b910f-0f6c-4c1b-b316-094d9754d8ec",
                            "depth": 0,
                        },
                        {
                            "code": _BATCH,
                            "kind": "slaughter_batch",
                            "product_code": "PIG-LIVE",
                            "product_name": "生猪",
                            "holder": "442000100001",
                            "holder_name": "中山市定点屠宰厂",
                            "status": "exhausted",
                            "kg_in": 690.0,
                            "kg_out": 690.0,
                            "kg_on_hand": 0.0,
                            "kg_sold": 0.0,
                            "head": {"in": 6, "out": 6, "on_hand": 0},
                            "origin_region": "445321",
                            "created_at": "2026-11-25T03:40:00+08:00",
                            "created_by_event": "b24c1124-2b93-4387-87f5-d78bbe491482",
                            "depth": 2,
                        },
                    ],
                    "edges": [
                        {
                            "from": _PIG_LOT,
                            "to": _WHOLESALE,
                            "kg": 318.0,
                            "head": None,
                            "kind": "trade",
                            "event_id": "4e3b910f-0f6c-4c1b-b316-094d9754d8ec",
                            "pending": False,
                        }
                    ],
                    "events": [
                        {
                            "event_id": "4e3b910f-0f6c-4c1b-b316-094d9754d8ec",
                            "event_type": "trade.received",
                            "occurred_at": "2026-11-25T06:02:00+08:00",
                            "operator": "442000500001",
                        }
                    ],
                }
            ]
        }
    )

    root: str
    direction: Literal["up", "down", "both"]
    max_depth: int
    lots: list[TraceLot] = Field(description="ordered by depth, then code")
    edges: list[TraceEdge]
    events: list[TraceEvent] = Field(description="the events that created the lots and edges, oldest first")


class RecallLot(BaseModel):
    code: str
    kind: str | None = Field(description=LOT_KINDS)
    depth: int
    product_code: str | None
    product_name: str | None
    status: LotStatus
    holder: str | None
    holder_name: str | None
    holder_kind: str | None
    holder_parent: str | None = Field(description="the market a stall or tenant is registered under")
    kg_in: float
    kg_on_hand: float
    kg_sold: float
    sold_at: str | None = Field(description="for a sale: when it was sold")


class RecallHolder(BaseModel):
    code: str = Field(description="the holder's operator code: whom to contact")
    name: str | None
    kind: str | None
    parent: str | None
    lots: int
    kg_on_hand: float
    kg_sold: float


class RecallTotals(BaseModel):
    lots: int
    sales: int
    kg_on_hand: float
    kg_sold: float


class Recall(BaseModel):
    """``GET /v1/lots/{code}/recall``: every downstream lot and sale, its holders and the totals."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "root": _PIG_LOT,
                    "lots": [
                        {
                            "code": _PIG_LOT,
                            "kind": "carcass",
                            "depth": 0,
                            "product_code": "pork.carcass",
                            "product_name": "白条猪肉（片猪肉）",
                            "status": "stopped",
                            "holder": "442000100001",
                            "holder_name": "中山市定点屠宰厂",
                            "holder_kind": "slaughterhouse",
                            "holder_parent": None,
                            "kg_in": 318.0,
                            "kg_on_hand": 0.0,
                            "kg_sold": 0.0,
                            "sold_at": None,
                        },
                        {
                            "code": "RS20261125060012037",
                            "kind": "sale",
                            "depth": 3,
                            "product_code": "pork.carcass",
                            "product_name": "白条猪肉（片猪肉）",
                            "status": "stopped",
                            "holder": "442000600012",
                            "holder_name": "东升市场12号摊",
                            "holder_kind": "retailer",
                            "holder_parent": "442000600001",
                            "kg_in": 0.862,
                            "kg_on_hand": 0.862,
                            "kg_sold": 0.0,
                            "sold_at": "2026-11-25T08:47:12+08:00",
                        },
                    ],
                    "holders": [
                        {
                            "code": "442000500001",
                            "name": "中山市肉类批发行",
                            "kind": "wholesaler",
                            "parent": "442000200001",
                            "lots": 1,
                            "kg_on_hand": 212.5,
                            "kg_sold": 0.0,
                        }
                    ],
                    "totals": {"lots": 3, "sales": 1, "kg_on_hand": 212.5, "kg_sold": 0.862},
                    "limit": 500,
                    "next_cursor": None,
                }
            ]
        }
    )

    root: str
    lots: list[RecallLot] = Field(
        description="a page of the root and everything downstream, by depth then code (`limit` lots at most)"
    )
    holders: list[RecallHolder] = Field(
        description="who holds the lots (sales excluded), most kg on hand first: of the whole recall, on every page"
    )
    totals: RecallTotals = Field(description="of the whole recall, on every page")
    limit: int = Field(description="the page size asked for", examples=[500])
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page of lots; null on the last page", examples=[None]
    )


# -- the consumer's view ------------------------------------------------------------------------------


class Region(BaseModel):
    """A region code (GB/T 2260) with its names; a name is null where the table does not know it."""

    code: str = Field(examples=["445321"])
    province: str | None = Field(examples=["广东省"])
    city: str | None = Field(examples=["云浮市"])
    county: str | None = Field(examples=["新兴县"])
    name: str | None = Field(examples=["广东省云浮市新兴县"])


class Label(BaseModel):
    zh: str
    en: str


class PublicOperator(BaseModel):
    """An operator as a consumer may see it: a business's name, never a person's."""

    name: str | None = Field(description="only for businesses (markets, slaughterhouses, bases, ...)")
    kind: str
    kind_label: Label
    region: Region


class PublicProduct(BaseModel):
    code: str | None
    name: str | None


class PublicChecks(BaseModel):
    """Checks along the chain as pass, fail or unknown; only those that apply to the product appear."""

    quarantine: CheckResult | None = None
    quality: CheckResult | None = None
    asf: CheckResult | None = None
    ractopamine: CheckResult | None = None
    compliance_certificate: CheckResult | None = None
    pesticide: CheckResult | None = None
    pesticide_tested_at: str | None = None
    customs: CheckResult | None = Field(default=None, description="imported meat: customs clearance (入境通关)")
    entry_inspection: CheckResult | None = Field(
        default=None,
        description="imported meat: the entry inspection and quarantine certificate (入境货物检验检疫证明)",
    )
    disinfection: CheckResult | None = Field(default=None, description="imported meat: the disinfection certificate")
    cold_chain: CheckResult | None = Field(
        default=None,
        description="frozen imported meat: fail with an open cold_chain_break alert on the product or a lot it came "
        "from; pass when temperatures were recorded and none is open; unknown when none were recorded",
    )


class PublicOrigin(BaseModel):
    region: Region
    name: str | None = Field(description="a planting base's name; never a farm's (it may be a family)")
    kind: str | None


class PublicWarning(BaseModel):
    level: Literal["stopped", "cold_chain"] = Field(
        description="stopped: sale of the product or a lot it came from is stopped; cold_chain: not stopped, but a "
        "cold_chain_break alert is open on it (a regulator has not resolved it)",
        examples=["stopped"],
    )
    reasons: list[Literal["asf_positive", "test_failed", "held", "cold_chain_break"]] = Field(
        description="why, as far as the recorded facts and alerts tell"
    )
    zh: str
    en: str


class PublicTrace(BaseModel):
    """``GET /v1/public/trace/{code}``: what a consumer sees for a receipt or label code. Nothing private:
    no person's name, phone number, upstream price or certificate number."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "RS20261125060012037",
                    "type": "sale",
                    "product": {"code": "pork.carcass", "name": "白条猪肉（片猪肉）"},
                    "weight_kg": 0.862,
                    "sold_at": "2026-11-25T08:47:12+08:00",
                    "seller": {
                        "name": None,
                        "kind": "retailer",
                        "kind_label": {"zh": "摊位", "en": "stall"},
                        "region": {
                            "code": "442000",
                            "province": "广东省",
                            "city": "中山市",
                            "county": None,
                            "name": "广东省中山市",
                        },
                    },
                    "market": {
                        "name": "东升镇农贸市场",
                        "kind": "retail_market",
                        "kind_label": {"zh": "农贸市场", "en": "wet market"},
                        "region": {
                            "code": "442000",
                            "province": "广东省",
                            "city": "中山市",
                            "county": None,
                            "name": "广东省中山市",
                        },
                    },
                    "stall": "A区12号",
                    "stocked_at": "2026-11-25T07:30:00+08:00",
                    "supplier": None,
                    "slaughterhouse": {
                        "name": "中山市定点屠宰厂",
                        "kind": "slaughterhouse",
                        "kind_label": {"zh": "定点屠宰厂", "en": "slaughterhouse"},
                        "region": {
                            "code": "442000",
                            "province": "广东省",
                            "city": "中山市",
                            "county": None,
                            "name": "广东省中山市",
                        },
                    },
                    "slaughtered_at": "2026-11-25T05:10:00+08:00",
                    "checks": {"quarantine": "pass", "quality": "pass", "asf": "pass", "ractopamine": "pass"},
                    "origin": {
                        "region": {
                            "code": "445321",
                            "province": "广东省",
                            "city": "云浮市",
                            "county": "新兴县",
                            "name": "广东省云浮市新兴县",
                        },
                        "name": None,
                        "kind": "farm",
                    },
                    "warning": None,
                    "status": "passed",
                }
            ]
        }
    )

    code: str
    type: Literal["sale", "lot"]
    product: PublicProduct | None
    weight_kg: float = Field(description="a sale's weight, or a lot's kg on hand")
    sold_at: str | None
    seller: PublicOperator | None
    market: PublicOperator | None = Field(description="the market the sale was made in or the lot is held in")
    stall: str | None = Field(description="the stall as the market labels it")
    stocked_at: str | None = Field(description="when the retailer received the goods")
    supplier: PublicOperator | None
    slaughterhouse: PublicOperator | None
    slaughtered_at: str | None
    checks: PublicChecks
    origin: PublicOrigin | None
    origin_country: str | None = Field(
        default=None,
        description="imported meat: the country of origin its customs entry states (ISO 3166-1 alpha-2)",
        examples=["BR"],
    )
    origin_country_name: Label | None = Field(
        default=None, description="the country's name in Chinese and English; null when the code is not in the table"
    )
    entry_port: str | None = Field(
        default=None, description="imported meat: the port it entered China by, as declared", examples=["南沙港"]
    )
    warning: PublicWarning | None = Field(
        description="set when the product or a lot it came from is stopped, or its cold chain was broken"
    )
    status: Literal["stopped", "failed", "passed", "incomplete"] = Field(
        description="the worst state a consumer must know of: stopped, a failed check, a check not recorded "
        "(incomplete), or every check passed"
    )
