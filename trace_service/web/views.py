"""What the consumer page shows, shaped from the public view (``ChainService.public``). Pure: no I/O.

The page only ever sees the public view, so it cannot show more than the API's consumer endpoint does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from trace_service.contract.origins import port_name

Lang = Literal["zh", "en"]

TEXT: dict[str, tuple[str, str]] = {
    "title": ("产品追溯", "Product trace"),
    "stopped": ("该产品已暂停销售", "Sale stopped"),
    "check_failed": ("检测不合格", "A check failed"),
    "sale_status": ("销售状态", "Sale"),
    "suspended": ("暂停销售", "Stopped"),
    "code": ("追溯码", "Trace code"),
    "product": ("产品", "Product"),
    "weight": ("重量", "Weight"),
    "on_hand": ("批次存量", "Lot quantity"),
    "sold_at": ("销售时间", "Sold at"),
    "origin": ("产地", "Origin"),
    "import": ("进口入境", "Import"),
    "origin_country": ("原产国", "Country of origin"),
    "entry_port": ("入境口岸", "Port of entry"),
    "cold_chain_title": ("冷链中断", "Cold chain broken"),
    "slaughter": ("屠宰", "Slaughter"),
    "slaughtered_at": ("屠宰时间", "Slaughtered"),
    "market": ("批发/进货", "Market and supplier"),
    "stocked_at": ("进货时间", "Stocked"),
    "supplier": ("供货方", "Supplier"),
    "stall": ("摊位/销售", "Stall and sale"),
    "stall_code": ("摊位", "Stall"),
    "seller": ("销售方", "Seller"),
    "sold_market": ("市场", "Market"),
    "tested_at": ("检测时间", "Tested"),
    "checks": ("检测与证明", "Checks and certificates"),
    "all_pass": ("各项检测与证明均合格。", "Every recorded check passed."),
    "failed": ("有检测不合格，请勿食用。", "A check failed. Do not eat this product."),
    "summary_stopped": ("已暂停销售，请勿食用。", "Sale stopped. Do not eat this product."),
    "summary_failed": ("检测不合格：", "Failed: "),
    "summary_incomplete": ("部分检测或证明未记录。", "Some checks are not recorded."),
    "contact_title": ("咨询与投诉", "Questions and complaints"),
    "desk": ("请到{market}服务台咨询。", "Ask the service desk of {market}."),
    "desk_unnamed": ("请到{market}的服务台咨询。", "Ask the service desk of the {market}."),
    "not_found_title": ("未找到该追溯码", "Trace code not found"),
    "not_found": (
        "我们没有找到这个追溯码。请核对小票或标签上的号码后重试；刚售出的商品可能需要几分钟才能查到。",
        "We could not find this trace code. Check the number on the receipt or label and try again; a sale "
        "may take a few minutes to appear.",
    ),
    "lookup_title": ("查询追溯码", "Look up a trace code"),
    "lookup_hint": ("输入小票或标签上的追溯码。", "Type the trace code printed on the receipt or label."),
    "lookup": ("查询", "Look up"),
    "your_code": ("您输入的号码", "You entered"),
    "switch": ("English", "中文"),
    "footer": (
        "本页只显示公开信息：不含个人姓名、电话、进货价格或证件编号。",
        "This page shows public information only: no personal names, phone numbers, upstream prices or "
        "certificate numbers.",
    ),
    "qr": ("二维码", "QR code"),
    "unknown": ("未记录", "not recorded"),
}

CHECKS: dict[str, tuple[str, str]] = {
    "quarantine": ("动物检疫", "Veterinary quarantine"),
    "quality": ("肉品品质检验", "Meat quality inspection"),
    "asf": ("非洲猪瘟检测", "African swine fever test"),
    "ractopamine": ("瘦肉精检测", "Ractopamine test"),
    "compliance_certificate": ("承诺达标合格证", "Compliance certificate"),
    "pesticide": ("农药残留快检", "Pesticide residue test"),
    "customs": ("海关入境通关", "Customs clearance"),
    "entry_inspection": ("入境货物检验检疫证明", "Entry inspection and quarantine certificate"),
    "disinfection": ("消毒证明", "Disinfection certificate"),
    "cold_chain": ("冷链温度", "Cold chain temperature"),
}
RESULTS: dict[str, tuple[str, str]] = {
    "pass": ("合格", "Pass"),
    "fail": ("不合格", "Fail"),
    "unknown": ("未记录", "Not recorded"),
}
# Which step of the timeline shows which check.
STEP_OF_CHECK = {
    "compliance_certificate": "origin",
    "quarantine": "slaughter",
    "quality": "slaughter",
    "asf": "slaughter",
    "ractopamine": "market",
    "pesticide": "market",
    "customs": "import",
    "entry_inspection": "import",
    "disinfection": "import",
    "cold_chain": "import",
}


def text(key: str, lang: Lang) -> str:
    zh, en = TEXT[key]
    return zh if lang == "zh" else en


def pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[0] if lang == "zh" else pair[1]


def parse_lang(value: str | None) -> Lang:
    return "en" if value and value.lower().startswith("en") else "zh"


def when(value: str | None) -> str | None:
    """``2026-11-25T08:15:00+08:00`` → ``2026-11-25 08:15`` (the view's times are already local)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value


@dataclass
class Badge:
    key: str
    label: str
    result: str  # pass, fail, unknown: also the CSS class
    result_label: str


@dataclass
class Line:
    label: str
    value: str
    kind: str = "text"  # text | when | code: dates and codes are kept on one line (site.css)


@dataclass
class Step:
    key: str
    title: str
    lines: list[Line] = field(default_factory=list)
    badges: list[Badge] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(b.result == "fail" for b in self.badges)


@dataclass
class Contact:
    """Whom to ask: the market's service desk when the market is known, and the hotline from settings.

    ``desk`` is the sentence in three parts, the market's name in the middle, so the page keeps the name
    on one line where it fits."""

    desk: tuple[str, str, str] | None
    hotline: str


@dataclass
class ConsumerPage:
    code: str
    lang: Lang
    product: str | None
    weight: str | None
    weight_label: str
    sold_at: str | None
    steps: list[Step]
    badges: list[Badge]
    warning: str | None
    warning_title: str | None
    # The headline under the product: the worst state (stopped, failed, incomplete, passed) and its words.
    status: str
    summary: str
    status_badge: Badge | None  # "sale: stopped", shown with the summary when sale is stopped
    contact: Contact


def _operator(op: dict[str, Any] | None, lang: Lang) -> str | None:
    """A business by name, else its kind (a farm or a stall keeper may be a person): what the view gives."""
    if not op:
        return None
    if op.get("name"):
        return str(op["name"])
    labels = op.get("kind_label") or {}
    return str(labels.get(lang) or op.get("kind") or "") or None


def _region(op: dict[str, Any] | None) -> str | None:
    region = (op or {}).get("region") or {}
    return region.get("name") or region.get("code")


def _kg(value: Any) -> str | None:
    if value is None:
        return None
    return f"{float(value):.3f}".rstrip("0").rstrip(".") + " kg"


def _add(lines: list[Line], label: str, value: str | None, kind: str = "text") -> None:
    if value:
        lines.append(Line(label, value, kind))


def contact(market: dict[str, Any] | None, lang: Lang, hotline: str) -> Contact:
    """The contact block: the market's desk (by name, else by kind) when known, and the hotline."""
    desk = None
    if market:
        name = _operator(market, lang)
        if name:
            before, _, after = text("desk" if market.get("name") else "desk_unnamed", lang).partition("{market}")
            desk = (before, name, after)
    return Contact(desk=desk, hotline=hotline)


def _summary(view: dict[str, Any], badges: list[Badge], lang: Lang) -> tuple[str, str]:
    # The view's status is already the worst state (ChainService.public): the page words it, nothing more.
    status = str(view.get("status"))
    if status == "stopped":
        return status, text("summary_stopped", lang)
    if status == "failed":
        failed = [b.label for b in badges if b.result == "fail"]
        return status, text("summary_failed", lang) + ("、" if lang == "zh" else ", ").join(failed)
    if status == "passed":
        return status, text("all_pass", lang)
    return status, text("summary_incomplete", lang)


def _import_step(view: dict[str, Any], badges: list[Badge], lang: Lang) -> Step:
    """Imported meat: where it was produced and where it entered China, with its entry checks. A country or
    port the tables do not know is shown as the code or name the declaration gave."""
    step = Step("import", text("import", lang), badges=badges)
    country = view.get("origin_country")
    names = view.get("origin_country_name") or {}
    _add(step.lines, text("origin_country", lang), names.get(lang) or (str(country) if country else None))
    port = view.get("entry_port")
    known = port_name(port)
    _add(step.lines, text("entry_port", lang), pick(known, lang) if known else (str(port) if port else None))
    return step


def consumer_page(view: dict[str, Any], lang: Lang, *, hotline: str) -> ConsumerPage:
    checks: dict[str, Any] = view.get("checks") or {}
    badges = [
        Badge(key, pick(CHECKS[key], lang), str(result), pick(RESULTS.get(str(result), RESULTS["unknown"]), lang))
        for key, result in checks.items()
        if key in CHECKS
    ]
    by_step: dict[str, list[Badge]] = {}
    for badge in badges:
        by_step.setdefault(STEP_OF_CHECK[badge.key], []).append(badge)
    tested_at = when(checks.get("pesticide_tested_at"))

    steps: list[Step] = []
    if view.get("origin_country") or view.get("entry_port") or by_step.get("import"):
        steps.append(_import_step(view, by_step.get("import", []), lang))
    origin = view.get("origin")
    if origin or by_step.get("origin"):
        step = Step("origin", text("origin", lang), badges=by_step.get("origin", []))
        region = (origin or {}).get("region") or {}
        _add(step.lines, pick(("地区", "Region"), lang), region.get("name") or region.get("code"))
        name = (origin or {}).get("name")
        if name:
            _add(step.lines, pick(("名称", "Name"), lang), str(name))
        steps.append(step)
    if view.get("slaughterhouse") or view.get("slaughtered_at") or by_step.get("slaughter"):
        step = Step("slaughter", text("slaughter", lang), badges=by_step.get("slaughter", []))
        _add(step.lines, pick(("屠宰厂", "Slaughterhouse"), lang), _operator(view.get("slaughterhouse"), lang))
        _add(step.lines, text("slaughtered_at", lang), when(view.get("slaughtered_at")), "when")
        steps.append(step)
    if view.get("supplier") or view.get("stocked_at"):
        step = Step("market", text("market", lang), badges=by_step.get("market", []))
        _add(step.lines, text("supplier", lang), _operator(view.get("supplier"), lang))
        _add(step.lines, pick(("所在地", "Region"), lang), _region(view.get("supplier")))
        _add(step.lines, text("stocked_at", lang), when(view.get("stocked_at")), "when")
        _add(step.lines, text("tested_at", lang), tested_at, "when")
        steps.append(step)
    elif steps:
        # A lot that never reached a market: a test made on it still shows, with the last step.
        steps[-1].badges += [b for b in by_step.get("market", []) if b.result != "unknown"]
    if view.get("type") == "sale":
        step = Step("sale", text("stall", lang))
        _add(step.lines, text("sold_market", lang), _operator(view.get("market"), lang))
        _add(step.lines, text("stall_code", lang), view.get("stall"))
        if not view.get("market"):
            _add(step.lines, text("seller", lang), _operator(view.get("seller"), lang))
        _add(step.lines, text("sold_at", lang), when(view.get("sold_at")), "when")
        _add(step.lines, text("weight", lang), _kg(view.get("weight_kg")))
        steps.append(step)

    warning_body = view.get("warning")
    warning = str(warning_body.get(lang) or warning_body.get("zh")) if isinstance(warning_body, dict) else None
    level = warning_body.get("level") if isinstance(warning_body, dict) else None
    warning_title = (text("cold_chain_title" if level == "cold_chain" else "stopped", lang)) if warning else None
    if warning is None and any(b.result == "fail" for b in badges):
        warning, warning_title = text("failed", lang), text("check_failed", lang)
    status, summary = _summary(view, badges, lang)
    status_badge = (
        Badge("sale", text("sale_status", lang), "fail", text("suspended", lang)) if status == "stopped" else None
    )
    product = view.get("product") or {}
    return ConsumerPage(
        code=str(view.get("code")),
        lang=lang,
        product=product.get("name") or product.get("code"),
        weight=_kg(view.get("weight_kg")),
        weight_label=text("weight", lang) if view.get("type") == "sale" else text("on_hand", lang),
        sold_at=when(view.get("sold_at")),
        steps=steps,
        badges=badges,
        warning=warning,
        warning_title=warning_title,
        status=status,
        summary=summary,
        status_badge=status_badge,
        contact=contact(view.get("market"), lang, hotline),
    )
