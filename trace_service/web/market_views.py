"""Shapes the public market bulletin into what ``/market`` shows: texts in the reader's language, formatted
figures, and the geometry of the 30-day chart, drawn server-side as inline SVG so that the page works with
JavaScript off. Pure: no I/O.

The template only places what is computed here (coordinates, labels); every value is escaped by the
template engine. Styling is by class (``market.css``): the pages' Content-Security-Policy allows no inline
style, and presentation attributes are not needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from trace_service.web.views import Lang

TEXT: dict[str, tuple[str, str]] = {
    "title": ("市场行情", "Market bulletin"),
    "brand": ("中山市菜篮子行情", "Zhongshan market bulletin"),
    "subtitle": (
        "全市零售成交量与均价（追溯系统零售记录）",
        "City-wide retail volume and average price (traced sales)",
    ),
    "date": ("日期", "Date"),
    "show": ("查看", "Show"),
    "product": ("品种", "Product"),
    "volume": ("成交量", "Volume"),
    "price": ("均价", "Avg price"),
    "change": ("较前日", "Day on day"),
    "trend": ("近30日均价", "Price, 30 days"),
    "chart_of": ("近30日走势", "Last 30 days"),
    "legend_volume": ("成交量（公斤/日）", "Volume (kg/day)"),
    "legend_heads": ("屠宰量（头/日）", "Slaughtered (head/day)"),
    "legend_price": ("均价（元/公斤）", "Avg price (CNY/kg)"),
    "legend_gap": ("空白：当日成交市场少于 {n} 个，不发布", "Gap: fewer than {n} markets sold that day; not published"),
    "none": ("当日无可发布的数据。", "No figures to publish for this day."),
    "withheld": ("不发布", "withheld"),
    "note": (
        "数据来自全市肉菜流通追溯系统的零售记录，为全市合计；只发布当日至少 {n} 个市场有成交的品种，"
        "不公布任何单个经营者的数据。价格为按重量加权的零售均价。",
        "Figures are city-wide totals of the retail sales recorded by the city's traceability system; a product is "
        "published for a day only when at least {n} markets sold it, and no single operator's figures are shown. "
        "Prices are kg-weighted average retail prices.",
    ),
    "bad_date": ("日期无效，已显示最近一天。", "That date is not available; showing the latest day."),
    "switch": ("English", "中文"),
    "kg_unit": ("公斤", "kg"),
    "head_unit": ("头", "head"),
    "yuan": ("元/公斤", "CNY/kg"),
}


def text(key: str, lang: Lang, **values: Any) -> str:
    zh, en = TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _number(value: float | None, places: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{places}f}"


def _change(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 100:+.1f}%"


# -- the chart ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    title: str
    bars: list[Bar] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # polylines of the price, broken where it is withheld
    points: list[Bar] = field(default_factory=list)  # the price points (x, y; width and height unused)
    left_ticks: list[Tick] = field(default_factory=list)
    right_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    gaps: list[Bar] = field(default_factory=list)  # withheld days, marked on the axis


def _nice(top: float) -> float:
    """A round upper bound for an axis (1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(top))) / 10
    for step in (1, 2, 5, 10):
        if top <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def chart(product: dict[str, Any], lang: Lang) -> Chart:
    """Volume bars (kg, or heads for pigs) on the left axis and the average price line on the right."""
    width, height, left, right, top, bottom = 720, 270, 64, 64, 16, 46
    days = product["days"]
    heads = product["unit"] == "head"
    volumes = [(d["head"] if heads else d["kg_sold"]) for d in days]
    prices = [d["avg_price"] for d in days]
    v_max = _nice(max((v for v in volumes if v is not None), default=0) * 1.05)
    known = [p for p in prices if p is not None]
    p_max = _nice(max(known, default=0) * 1.15)
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(days))
    name = product["name"]
    c = Chart(width, height, left, right, top, bottom, f"{name} · {text('chart_of', lang)}")
    unit = text("head_unit" if heads else "kg_unit", lang)
    for i, (d, v) in enumerate(zip(days, volumes, strict=True)):
        x = left + i * step + step * 0.15
        if v is None:
            c.gaps.append(Bar(x, top + plot_h - 3, step * 0.7, 3, f"{d['day']}: {text('withheld', lang)}"))
            continue
        h = plot_h * v / v_max
        c.bars.append(Bar(x, top + plot_h - h, step * 0.7, h, f"{d['day']}: {_number(v)} {unit}"))
    if not heads:
        run: list[str] = []
        for i, (d, p) in enumerate(zip(days, prices, strict=True)):
            if p is None:
                if len(run) > 1:
                    c.lines.append(" ".join(run))
                run = []
                continue
            x, y = left + i * step + step / 2, top + plot_h * (1 - p / p_max)
            run.append(f"{x:.1f},{y:.1f}")
            c.points.append(Bar(x, y, 0, 0, f"{d['day']}: {p:.2f} {text('yuan', lang)}"))
        if len(run) > 1:
            c.lines.append(" ".join(run))
        c.right_ticks = [Tick(top + plot_h * (1 - f), f"{p_max * f:.1f}") for f in (0, 0.5, 1)]
    c.left_ticks = [Tick(top + plot_h * (1 - f), _number(v_max * f, 0)) for f in (0, 0.5, 1)]
    for i in sorted({0, len(days) // 2, len(days) - 1}):
        c.x_ticks.append(Tick(left + i * step + step / 2, days[i]["day"][5:]))
    return c


def sparkline(product: dict[str, Any]) -> str:
    """The 30-day price as one small polyline (80 x 20), empty when fewer than two prices are known."""
    prices = [d["avg_price"] for d in product["days"]]
    known = [p for p in prices if p is not None]
    if len(known) < 2:
        return ""
    # A day-to-day wobble of a few fen must look flat: the line spans at least 30 % of the mean price.
    mean = sum(known) / len(known)
    span = max(max(known) - min(known), 0.3 * mean) or 1.0
    low = (max(known) + min(known)) / 2 - span / 2
    step = 80 / max(1, len(prices) - 1)
    return " ".join(f"{i * step:.1f},{18 - 16 * (p - low) / span:.1f}" for i, p in enumerate(prices) if p is not None)


# -- the page -----------------------------------------------------------------------------------------


def page(data: dict[str, Any], lang: Lang, wanted: str | None, *, bad_date: bool = False) -> dict[str, Any]:
    """Everything ``market.html`` shows, in ``lang``."""
    rows = []
    selected = None
    for p in data["products"]:
        name = p["product_name"]["en" if lang == "en" else "zh"]
        heads = p["unit"] == "head"
        today = p["today"]
        volume = today["head"] if heads else today["kg_sold"]
        unit = text("head_unit" if heads else "kg_unit", lang)
        row = {
            "code": p["product"],
            "name": name,
            "volume": f"{_number(volume, 0 if heads else 1)} {unit}" if volume is not None else text("withheld", lang),
            "price": f"{today['avg_price']:.2f}" if today["avg_price"] is not None else "",
            "change": _change(p["price_change"]),
            "direction": "up" if (p["price_change"] or 0) > 0 else "down" if (p["price_change"] or 0) < 0 else "flat",
            "sparkline": sparkline(p),
            "href": "?" + urlencode({"date": data["date"], "product": p["product"], "lang": lang}),
        }
        rows.append(row)
        if selected is None or p["product"] == wanted:
            selected = (p, name)
    shown = None
    if selected is not None:
        product, name = selected
        shown = chart({**product, "name": name}, lang)
    selected_code = selected[0]["product"] if selected else None
    keep = {"date": data["date"], **({"product": selected_code} if selected_code else {})}
    return {
        "date": data["date"],
        "rows": rows,
        "selected": selected_code,
        "chart": shown,
        "heads": bool(selected and selected[0]["unit"] == "head"),
        "min_sellers": data["min_sellers"],
        "bad_date": bad_date,
        "switch": {
            "href": "?" + urlencode({**keep, "lang": "en" if lang == "zh" else "zh"}),
            "label": text("switch", lang),
            "lang": "en" if lang == "zh" else "zh-CN",
        },
    }
