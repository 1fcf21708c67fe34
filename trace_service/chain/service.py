"""Use cases of the trace graph: read a lot, trace it up and down, list a recall, show a consumer."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import repository as access_repo
from trace_service.access import scopes
from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.chain import reads as repo
from trace_service.contract.origins import country_name
from trace_service.contract.regions import describe_region
from trace_service.db import uow
from trace_service.errors import Forbidden, InvalidInput, NotFound

MAX_DEPTH = 50
RECALL_PAGE = 500  # lots per page of a recall's JSON (a farm-wide recall lists thousands)
RECALL_CSV_PAGE = 2000
LOCAL = ZoneInfo("Asia/Shanghai")

# Operators whose names a consumer may see: businesses. A wholesaler is shown by its registered trade name
# (a trade name is not personal data; the consumer asks which supplier it was). A farm may be a family and a
# stall keeper is often a person: they are shown by kind (the stall by the label the market gives it).
PUBLIC_NAME_KINDS = {
    "slaughterhouse", "wholesale_market", "wholesaler", "retail_market", "supermarket", "planting_base", "canteen",
    "importer", "cold_store",
}  # fmt: skip
KIND_LABELS = {
    "farm": ("养殖场", "farm"),
    "slaughterhouse": ("定点屠宰厂", "slaughterhouse"),
    "wholesale_market": ("批发市场", "wholesale market"),
    "wholesaler": ("批发商", "wholesaler"),
    "retail_market": ("农贸市场", "wet market"),
    "retailer": ("摊位", "stall"),
    "supermarket": ("超市", "supermarket"),
    "planting_base": ("种植基地", "planting base"),
    "canteen": ("食堂", "canteen"),
    "importer": ("进口商", "importer"),
    "cold_store": ("冷库", "cold store"),
}


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _lot_body(row: dict[str, Any]) -> dict[str, Any]:
    kg_in, kg_out = row["kg_in"] or Decimal(0), row["kg_out"] or Decimal(0)
    return {
        "code": row["code"],
        "kind": row["kind"],
        "product_code": row["product_code"],
        "product_name": row["product_name"],
        "holder": row["holder"],
        "holder_name": row["holder_name"],
        "status": row["status"],
        "kg_in": float(kg_in),
        "kg_out": float(kg_out),
        "kg_on_hand": float(kg_in - kg_out),
        "kg_sold": _num(row["kg_sold"]),
        "head": {"in": row["head_in"], "out": row["head_out"], "on_hand": row["head_in"] - row["head_out"]}
        if row["head_in"]
        else None,
        "origin_region": row["origin_region"],
        "created_at": row["created_at"].isoformat() if row["created_at"] else None,
        "created_by_event": str(row["created_by_event"]) if row["created_by_event"] else None,
    }


class ChainService:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _root(self, code: str) -> int:
        lot = await repo.lot_id(self.conn, code)
        if lot is None:
            raise NotFound(f"no lot or sale {code}")
        return lot

    async def _scope(self, principal: Principal) -> list[str] | None:
        scope = await access.reporting_scope(self.conn, principal)
        return None if scope is None else list(scope)

    async def _check_read(self, principal: Principal, root: int, row: dict[str, Any]) -> None:
        """Operators read their own lots and the lots upstream of their own; regulators read everything."""
        scope = await self._scope(principal)
        if scope is None or row["holder"] in scope:
            return
        if not await repo.feeds_scope(self.conn, root, scope, MAX_DEPTH):
            # The same answer as for an unknown code: an operator learns nothing of other operators' lots.
            raise NotFound(f"no lot or sale {row['code']}")

    async def lot(self, principal: Principal, code: str) -> dict[str, Any]:
        granted = scopes.require_events(principal) if principal.role == Role.DEPARTMENT else None
        root = await self._root(code)
        [row] = await repo.load_lots(self.conn, [root])
        if granted is not None:
            return await self._department_lot(principal, granted, code, row)
        await self._check_read(principal, root, row)
        body = _lot_body(row)
        body["documents"] = row["documents"]
        body["facts"] = [
            {
                "fact": f["fact"],
                "result": f["result"],
                "occurred_at": f["occurred_at"].isoformat(),
                "event_id": str(f["event_id"]),
                **f["data"],
            }
            for f in await repo.load_facts(self.conn, [root])
        ]
        return body

    async def trace(self, principal: Principal, code: str, direction: str, max_depth: int) -> str:
        """The lineage as JSON text, rendered by Postgres in the same statement that walks the graph."""
        if principal.role == Role.DEPARTMENT:
            scopes.require_events(principal)
        if principal.role == Role.OPERATOR:
            if direction != "up":
                raise Forbidden("operators may trace up from their own lots only")
            root = await self._root(code)
            scope = await self._scope(principal)
            [row] = await repo.load_lots(self.conn, [root])
            if scope is not None and row["holder"] not in scope:
                raise NotFound(f"no lot or sale {code}")
        # Operators walk confirmed links only: a pending link grants no right to read upstream.
        body = await repo.trace_json(
            self.conn, code, direction, max_depth, confirmed_only=principal.role == Role.OPERATOR
        )
        if body is None:
            raise NotFound(f"no lot or sale {code}")
        if principal.role == Role.DEPARTMENT:
            return await self._department_trace(principal, code, body)
        return body

    # -- a department's reads (contract section 9): the graph, with the events its scopes cover ---------------

    async def _department_lot(
        self, principal: Principal, granted: scopes.Scopes, code: str, row: dict[str, Any]
    ) -> dict[str, Any]:
        """The lot as a regulator sees it, less what comes from events outside the key's scopes: the facts of
        other event types, and the documents and creating event when the lot's creating event is not covered."""
        body = _lot_body(row)
        facts = await repo.load_facts(self.conn, [row["id"]])
        ids = [f["event_id"] for f in facts] + ([row["created_by_event"]] if row["created_by_event"] else [])
        types = {e["event_id"]: e["event_type"] for e in await repo.load_events(self.conn, ids)}
        created = row["created_by_event"]
        covered = created is not None and granted.covers_event(types.get(created, ""))
        body["created_by_event"] = str(created) if covered else None
        body["documents"] = row["documents"] if covered else {}
        body["facts"] = [
            {
                "fact": f["fact"],
                "result": f["result"],
                "occurred_at": f["occurred_at"].isoformat(),
                "event_id": str(f["event_id"]),
                **f["data"],
            }
            for f in facts
            if granted.covers_event(types.get(f["event_id"], ""))
        ]
        if not granted.personal and row["holder_kind"] not in PUBLIC_NAME_KINDS:
            body["holder_name"] = None  # a farmer's or a stall keeper's name is a person's
        await access_repo.record_audit(
            self.conn, actor=principal.key_id, role=principal.role.value, action="read",
            subject=f"/v1/lots/{code}", count=len(body["facts"]),
        )  # fmt: skip
        return body

    async def _department_trace(self, principal: Principal, code: str, text: str) -> str:
        """The lineage with only the events the key's scopes cover, and holders' names only of businesses
        unless the key has ``personal``."""
        granted = scopes.Scopes.of(principal)
        body = orjson.loads(text)
        types = {e["event_id"]: e["event_type"] for e in body["events"]}
        body["events"] = [e for e in body["events"] if granted.covers_event(e["event_type"])]
        holders = {x["holder"] for x in body["lots"]}
        kinds = {} if granted.personal else await access_repo.operator_kinds(self.conn, holders)
        for lot in body["lots"]:
            if lot.get("created_by_event") and not granted.covers_event(types.get(lot["created_by_event"], "")):
                lot["created_by_event"] = None
            if not granted.personal and kinds.get(lot["holder"]) not in PUBLIC_NAME_KINDS:
                lot["holder_name"] = None
        await access_repo.record_audit(
            self.conn, actor=principal.key_id, role=principal.role.value, action="read",
            subject=f"/v1/lots/{code}/trace", count=len(body["events"]),
        )  # fmt: skip
        return orjson.dumps(body).decode()

    def _may_recall(self, principal: Principal) -> None:
        if principal.role == Role.DEPARTMENT:
            raise Forbidden("a recall is for regulators; a department reads the lot and its trace")
        access.require(principal, Role.ADMIN, Role.REGULATOR)

    async def recall(self, principal: Principal, code: str, cursor: str | None = None, limit: int = RECALL_PAGE) -> str:
        """Every downstream lot and sale: the holders and totals of all of them, and the lots a page at a time
        (``next_cursor`` names the next page), as JSON text (regulators and admins: it names every holder's
        contact, which is no department's to read)."""
        self._may_recall(principal)
        after = None
        if cursor is not None:
            after = repo.parse_cursor(cursor)
            if after is None:
                raise InvalidInput("cursor: not a cursor this recall gave")
        body = await repo.recall_json(self.conn, code, MAX_DEPTH, after=after, limit=limit)
        if body is None:
            raise NotFound(f"no lot or sale {code}")
        return body

    async def recall_csv(
        self, principal: Principal, code: str, connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
    ) -> AsyncIterator[str]:
        """The whole recall as CSV text, streamed a page at a time (UTF-8 with a byte-order mark: spreadsheet
        programs then read Chinese). The first page is read before this returns (an unknown code is a 404);
        the rest on connections from ``connect`` while the response streams."""
        self._may_recall(principal)
        first = await repo.recall_rows(self.conn, code, MAX_DEPTH, limit=RECALL_CSV_PAGE)
        if not first:
            raise NotFound(f"no lot or sale {code}")
        return _csv_stream(code, first, connect)

    # -- the consumer's view --------------------------------------------------------------------------

    async def public(self, code: str) -> dict[str, Any]:
        return (await self.public_view(code)).view

    async def public_view(self, code: str) -> PublicView:
        """The consumer's view with its version (``etag``): one statement reads everything the view is made
        of, and the view is built once per version of that text."""
        text = await repo.public_json(self.conn, code, MAX_DEPTH)
        if text is None:
            raise NotFound(f"no lot or sale {code}")
        etag = '"' + hashlib.blake2b(f"{code}\n{text}".encode(), digest_size=12).hexdigest() + '"'
        cached = VIEWS.get(etag)
        if cached is not None:
            return cached
        view = _public(code, orjson.loads(text))
        return VIEWS.put(PublicView(etag, view, orjson.dumps(view)))

    # -- the consumer's view --------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicView:
    """A version of a consumer's view: its ``etag`` (a quoted hash of everything the view is made of, so any
    change on the chain changes it), the view and its JSON bytes."""

    etag: str
    view: dict[str, Any]
    body: bytes


class ViewCache:
    """The views built lately, by version, and what was rendered from them (the page in each language): a scan
    storm asks for the same few codes. An entry never goes stale, since its key is the content's hash; the
    oldest are dropped past ``size``."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._views: OrderedDict[str, PublicView] = OrderedDict()
        self._rendered: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, etag: str) -> PublicView | None:
        view = self._views.get(etag)
        if view is not None:
            self._views.move_to_end(etag)
        return view

    def put(self, view: PublicView) -> PublicView:
        self._views[view.etag] = view
        if len(self._views) > self.size:
            self._views.popitem(last=False)
        return view

    def rendered(self, etag: str, variant: str, render: Callable[[], Any]) -> Any:
        key = (etag, variant)
        out = self._rendered.get(key)
        if out is None:
            out = self._rendered[key] = render()
            if len(self._rendered) > self.size:
                self._rendered.popitem(last=False)
        return out


VIEWS = ViewCache()

# A scan storm asks for the same few codes thousands of times a second: a view read less than this long ago is
# served again without asking Postgres, so a hold or a recall reaches the page within this (and the apply).
FRESH_SECONDS = 0.5
_FRESH: dict[str, tuple[float, PublicView]] = {}
_FRESH_MAX = 4096


async def fresh_public_view(engine: AsyncEngine, code: str) -> PublicView:
    """The consumer's view of ``code``, read from Postgres at most every :data:`FRESH_SECONDS` per process."""
    now = time.monotonic()
    hit = _FRESH.get(code)
    if hit is not None and now - hit[0] < FRESH_SECONDS:
        return hit[1]
    async with uow.reading(engine) as conn:
        found = await ChainService(conn).public_view(code)
    if len(_FRESH) >= _FRESH_MAX:
        _FRESH.clear()
    _FRESH[code] = (now, found)
    return found


async def _csv_stream(
    code: str, first: list[Any], connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
) -> AsyncIterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    out.write("\ufeff")
    writer.writerow(repo.RECALL_FIELDS)
    rows = first
    while rows:
        for row in rows:
            writer.writerow([_csv_cell(v) for v in row])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(rows) < RECALL_CSV_PAGE:
            return
        after = (int(rows[-1][2]), str(rows[-1][0]))
        async with connect() as conn:
            rows = await repo.recall_rows(conn, code, MAX_DEPTH, after=after, limit=RECALL_CSV_PAGE)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return _csv_safe(value)


def _public(code: str, found: dict[str, Any]) -> dict[str, Any]:
    """The consumer's view from what ``reads.public_json`` found: the lots up the chain (by depth, then code),
    their facts, the operators named, the lots with an open cold-chain alert and whether temperatures exist."""
    ancestors: list[dict[str, Any]] = found["lots"]
    for r in ancestors:
        r["created_at"] = datetime.fromisoformat(r["created_at"]) if r["created_at"] else None
    facts: list[dict[str, Any]] = found["facts"]
    for f in facts:
        f["occurred_at"] = datetime.fromisoformat(f["occurred_at"])
    operators: dict[str, dict[str, Any]] = found["operators"]
    broken: list[str] = found["broken"]
    me = ancestors[0]
    if me["status"] == "unresolved":
        raise NotFound(f"no lot or sale {code}")

    sale = me if me["kind"] == "sale" else None
    stocked = next((r for r in ancestors if r["kind"] == "received" and r["id"] != me["id"]), None) if sale else None
    if sale is None and me["kind"] == "received":
        stocked = me
    batch = next((r for r in ancestors if r["kind"] == "slaughter_batch"), None)
    carcass = next((r for r in ancestors if r["kind"] == "carcass"), None)
    origin = next((r for r in reversed(ancestors) if r["origin_region"]), None)
    product = next((r for r in ancestors if r["product_name"]), None)
    # Imported meat: the lot customs cleared is the root of its chain (the furthest imported ancestor).
    imported = next((r for r in reversed(ancestors) if r["kind"] == "imported"), None)

    checks = _checks(ancestors, facts, batch, carcass)
    if imported is not None or broken:
        checks |= _import_checks(imported, facts, broken, bool(found["readings"]))
    stopped = [r for r in ancestors if r["status"] == "stopped"]
    warning = _warning(stopped, facts, broken)
    country = imported["documents"].get("origin_country") if imported else None
    names = country_name(country)

    return {
        "code": code,
        "type": "sale" if sale else "lot",
        "product": {"code": product["product_code"], "name": product["product_name"]} if product else None,
        "weight_kg": float(sale["kg_in"]) if sale else float(me["kg_on_hand"] or 0),
        "sold_at": _local(sale["created_at"]) if sale else None,
        "seller": _public_operator(operators.get(me["holder"])) if sale else None,
        # The market the sale was made in, or the lot is held in: whose service desk a consumer asks.
        "market": _market(operators, me["holder"]),
        # The stall as the market labels it (A区12号); never the stall keeper's operator code.
        "stall": me["documents"].get("stall") if sale else None,
        "stocked_at": _local(stocked["created_at"]) if stocked else None,
        "supplier": _public_operator(operators.get(stocked["documents"].get("seller"))) if stocked else None,
        "slaughterhouse": _public_operator(operators.get(batch["holder"])) if batch else None,
        "slaughtered_at": _local(carcass["created_at"]) if carcass else None,
        "checks": checks,
        "origin": _origin(origin, operators),
        "origin_country": country,
        "origin_country_name": {"zh": names.zh, "en": names.en} if names else None,
        "entry_port": imported["documents"].get("entry_port") if imported else None,
        "warning": warning,
        "status": _summary(checks, warning),
    }


def _csv_safe(value: Any) -> Any:
    # Codes and names come from outside: never let a spreadsheet read a cell as a formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _local(moment: datetime | None) -> str | None:
    return moment.astimezone(LOCAL).isoformat() if moment else None


def _public_operator(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    zh, en = KIND_LABELS.get(row["kind"], ("经营者", "operator"))
    public = row["kind"] in PUBLIC_NAME_KINDS
    return {
        "name": row["name"] if public else None,
        "kind": row["kind"],
        "kind_label": {"zh": zh, "en": en},
        "region": describe_region(row["region"]),
    }


def _market(operators: dict[str, dict[str, Any]], holder: str | None) -> dict[str, Any] | None:
    row = operators.get(holder) if holder else None
    if row is None:
        return None
    if row["kind"] in ("retail_market", "wholesale_market", "supermarket", "canteen"):
        return _public_operator(row)
    parent = operators.get(row["parent"]) if row.get("parent") else None
    return _public_operator(parent)


def _origin(row: dict[str, Any] | None, operators: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if row is None:
        return None
    holder = operators.get(row["holder"]) if row["holder"] else None
    # A planting base is a business and may be named; a farm may be a family: region only.
    name = holder["name"] if holder and holder["kind"] in PUBLIC_NAME_KINDS else None
    return {"region": describe_region(row["origin_region"]), "name": name, "kind": holder["kind"] if holder else None}


def _status(results: list[str | None], good: str, bad: str) -> str:
    if any(r == bad for r in results):
        return "fail"
    if any(r == good for r in results):
        return "pass"
    return "unknown"


def _checks(
    ancestors: list[dict[str, Any]],
    facts: list[dict[str, Any]],
    batch: dict[str, Any] | None,
    carcass: dict[str, Any] | None,
) -> dict[str, Any]:
    tests = [f for f in facts if f["fact"] == "test"]
    checks: dict[str, Any] = {}
    if batch is not None or carcass is not None:
        quarantined = bool(
            (batch and batch["documents"].get("quarantine_cert_number"))
            and (carcass and carcass["documents"].get("product_quarantine_cert_number"))
        )
        checks["quarantine"] = "pass" if quarantined else "unknown"
        quality = bool(carcass and carcass["documents"].get("quality_cert_number"))
        checks["quality"] = "pass" if quality else "unknown"
        checks["asf"] = _status([f["result"] for f in facts if f["fact"] == "asf"], "negative", "positive")
        checks["ractopamine"] = _status(
            [f["result"] for f in tests if f["data"].get("test") == "ractopamine"], "pass", "fail"
        )
    if any(r["kind"] == "produce" for r in ancestors):
        produce = next(r for r in ancestors if r["kind"] == "produce")
        checks["compliance_certificate"] = "pass" if produce["documents"].get("compliance_cert_number") else "unknown"
        pesticide = [f for f in tests if f["data"].get("test") == "pesticide_rapid"]
        checks["pesticide"] = _status([f["result"] for f in pesticide], "pass", "fail")
        checks["pesticide_tested_at"] = _local(pesticide[-1]["occurred_at"]) if pesticide else None
    return checks


# Why a lot is stopped, from the facts that stop it (the same facts as chain.writes' status), in the
# order the page names them.
STOP_REASONS = {
    "asf_positive": ("非洲猪瘟检测阳性", "ASF test positive"),
    "test_failed": ("检测不合格", "failed test"),
    "held": ("监管部门控制", "held by the regulator"),
}


def _stop_reasons(stopped: list[dict[str, Any]], facts: list[dict[str, Any]]) -> list[str]:
    """The reasons behind the stops of these lots: their stopping facts since their last release."""
    codes = {r["code"] for r in stopped}
    found: set[str] = set()
    for code in codes:
        mine = [f for f in facts if f["lot"] == code]
        released = max((f["occurred_at"] for f in mine if f["fact"] == "release"), default=None)
        for f in mine:
            if released is not None and f["occurred_at"] <= released:
                continue
            if f["fact"] == "hold":
                found.add("held")
            elif f["fact"] == "test" and f["result"] == "fail":
                found.add("test_failed")
            elif f["fact"] == "asf" and f["result"] == "positive":
                found.add("asf_positive")
    return [r for r in STOP_REASONS if r in found]


def _warning(stopped: list[dict[str, Any]], facts: list[dict[str, Any]], broken: list[str]) -> dict[str, Any] | None:
    """The warning a consumer must see first: sale stopped, or the cold chain broken (an open
    ``cold_chain_break`` alert on the product or a lot it came from), or both."""
    if not stopped and not broken:
        return None
    if not stopped:
        return {
            "level": "cold_chain",
            "reasons": ["cold_chain_break"],
            "zh": "警告：该冷冻产品或其上游批次在冷库或运输中温度超标（冷链中断），请勿食用，并向市场咨询。",
            "en": "Warning: this frozen product, or a lot it came from, was kept too warm in a cold store or in "
            "transport (cold chain broken). Do not eat it; ask the market.",
        }
    reasons: list[str] = _stop_reasons(stopped, facts)
    why_zh = "、".join(STOP_REASONS[r][0] for r in reasons) or "检测不合格、非洲猪瘟阳性或监管扣留"
    why_en = ", ".join(STOP_REASONS[r][1] for r in reasons) or "a failed test, ASF positive or a regulator's hold"
    if broken:
        reasons.append("cold_chain_break")
        why_zh += "；另有冷链温度超标"
        why_en += "; its cold chain was also broken"
    return {
        "level": "stopped",
        "reasons": reasons,
        "zh": f"警告：该产品或其上游批次已暂停销售（原因：{why_zh}），请勿食用。",
        "en": f"Warning: sale of this product, or of a lot it came from, is stopped ({why_en}). Do not eat it.",
    }


def _summary(checks: dict[str, Any], warning: dict[str, Any] | None) -> str:
    """The worst state the consumer must know of: stopped, a failed check, a check not recorded, or all
    checks passed. The page's headline says this and nothing more cheerful (a broken cold chain is the
    ``cold_chain`` check failed)."""
    results = [v for k, v in checks.items() if k != "pesticide_tested_at"]
    if warning is not None and warning["level"] == "stopped":
        return "stopped"
    if "fail" in results:
        return "failed"
    if results and all(r == "pass" for r in results):
        return "passed"
    return "incomplete"


# -- imported meat: its entry documents and its cold chain ----------------------------------------------------


def _import_checks(
    imported: dict[str, Any] | None, facts: list[dict[str, Any]], broken: list[str], readings: bool
) -> dict[str, Any]:
    """The checks of an imported chain: customs clearance (its declaration is required by the contract), the
    entry inspection and quarantine certificate and the disinfection certificate (stated at clearance or
    supplied later), and the cold chain (failed with an open ``cold_chain_break`` alert, passed when
    temperatures were recorded and none is open)."""
    checks: dict[str, Any] = {}
    if imported is not None:
        later = [f["data"] for f in facts if f["lot"] == imported["code"] and f["fact"] == "import_docs"]
        docs = [imported["documents"], *later]
        checks["customs"] = "pass" if imported["documents"].get("customs_declaration_number") else "unknown"
        for check, key in (
            ("entry_inspection", "inspection_cert_number"),
            ("disinfection", "disinfection_cert_number"),
        ):
            checks[check] = "pass" if any(d.get(key) for d in docs) else "unknown"
    checks["cold_chain"] = "fail" if broken else "pass" if readings else "unknown"
    return checks
