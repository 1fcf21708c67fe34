"""Names of the places imported meat comes from and enters by: countries (ISO 3166-1 alpha-2) and the entry
ports of the Pearl River Delta. Pure: no I/O.

The country table holds the countries whose meat China admits (pork, beef, mutton or poultry, as the
customs administration's lists of registered plants name them), in Chinese and English. A code the table
does not know is shown as itself by callers, never hidden. Ports are named by their Chinese name or their
UN/LOCODE, as the customs declaration states them.
"""

from __future__ import annotations

from typing import NamedTuple


class Name(NamedTuple):
    zh: str
    en: str


COUNTRIES: dict[str, Name] = {
    "AR": Name("阿根廷", "Argentina"),
    "AT": Name("奥地利", "Austria"),
    "AU": Name("澳大利亚", "Australia"),
    "BE": Name("比利时", "Belgium"),
    "BO": Name("玻利维亚", "Bolivia"),
    "BR": Name("巴西", "Brazil"),
    "BY": Name("白俄罗斯", "Belarus"),
    "CA": Name("加拿大", "Canada"),
    "CL": Name("智利", "Chile"),
    "CR": Name("哥斯达黎加", "Costa Rica"),
    "CZ": Name("捷克", "Czechia"),
    "DE": Name("德国", "Germany"),
    "DK": Name("丹麦", "Denmark"),
    "ES": Name("西班牙", "Spain"),
    "FI": Name("芬兰", "Finland"),
    "FR": Name("法国", "France"),
    "GB": Name("英国", "United Kingdom"),
    "HU": Name("匈牙利", "Hungary"),
    "IE": Name("爱尔兰", "Ireland"),
    "IT": Name("意大利", "Italy"),
    "JP": Name("日本", "Japan"),
    "KR": Name("韩国", "South Korea"),
    "KZ": Name("哈萨克斯坦", "Kazakhstan"),
    "MN": Name("蒙古", "Mongolia"),
    "MX": Name("墨西哥", "Mexico"),
    "NA": Name("纳米比亚", "Namibia"),
    "NL": Name("荷兰", "Netherlands"),
    "NO": Name("挪威", "Norway"),
    "NZ": Name("新西兰", "New Zealand"),
    "PL": Name("波兰", "Poland"),
    "PT": Name("葡萄牙", "Portugal"),
    "RS": Name("塞尔维亚", "Serbia"),
    "RU": Name("俄罗斯", "Russia"),
    "SE": Name("瑞典", "Sweden"),
    "TH": Name("泰国", "Thailand"),
    "US": Name("美国", "United States"),
    "UY": Name("乌拉圭", "Uruguay"),
    "ZA": Name("南非", "South Africa"),
}

# Entry ports by Chinese name, with their UN/LOCODE: the ports that clear frozen meat for Zhongshan and its
# neighbours, and the largest ones elsewhere.
PORTS: dict[str, tuple[str, Name]] = {
    "南沙港": ("CNNSA", Name("南沙港", "Nansha Port")),
    "蛇口港": ("CNSHK", Name("蛇口港", "Shekou Port")),
    "黄埔港": ("CNHUA", Name("黄埔港", "Huangpu Port")),
    "盐田港": ("CNYTN", Name("盐田港", "Yantian Port")),
    "中山港": ("CNZSN", Name("中山港", "Zhongshan Port")),
    "珠海港": ("CNZUH", Name("珠海港", "Zhuhai Port")),
    "天津港": ("CNTXG", Name("天津港", "Tianjin Port")),
    "上海港": ("CNSHA", Name("上海港", "Shanghai Port")),
}
_BY_LOCODE = dict(PORTS.values())


def country_name(code: str | None) -> Name | None:
    """The Chinese and English names of an ISO 3166-1 alpha-2 code, or None when the table does not know it."""
    return COUNTRIES.get(code.upper()) if code else None


def port_name(port: str | None) -> Name | None:
    """The names of an entry port given by its Chinese name or its UN/LOCODE; None when unknown."""
    if not port:
        return None
    known = PORTS.get(port.strip())
    return known[1] if known else _BY_LOCODE.get(port.strip().upper())
