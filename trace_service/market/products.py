"""Names of product codes as people know them (猪肉, 菜心), for the bulletin, the board and level messages.
Pure: no I/O.

Events carry a ``product_code`` chosen by whoever numbers the lots, and a ``product_name`` that is the
seller's own wording (``猪胴体(白条)``, ``白条猪肉（片猪肉）``). A public bulletin needs one name per code,
in the words of a market's price board, so this table maps the codes the city's systems and the simulator
use to a Chinese and an English name. ``TRACE_PRODUCT_NAMES`` adds or overrides entries without a
release, as JSON: ``{"VEG-ZHUSUN": ["竹笋", "Bamboo shoots"]}``. A code the table does not know is shown
as itself, never hidden.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class ProductName:
    zh: str
    en: str
    known: bool = True

    def pick(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


# The codes of the simulator, the scenario files, the benches and the provincial catalogue's usual
# spellings (upper case; lookups are case-insensitive).
_TABLE: dict[str, tuple[str, str]] = {
    "PIG-LIVE": ("生猪", "Live pigs"),
    "PORK-CARCASS": ("猪肉", "Pork"),
    "PORK.CARCASS": ("猪肉", "Pork"),
    "PORK-FORELEG": ("前腿肉", "Pork shoulder"),
    "PORK-HINDLEG": ("后腿肉", "Pork leg"),
    "PORK-BELLY": ("五花肉", "Pork belly"),
    "PORK-RIBS": ("排骨", "Pork ribs"),
    "PORK-OFFAL": ("猪杂", "Pork offal"),
    "PORK-FROZEN": ("冷冻猪肉", "Frozen pork"),
    "BEEF-FROZEN": ("冷冻牛肉", "Frozen beef"),
    "VEG-CAIXIN": ("菜心", "Choy sum"),
    "VEG-CHOYSUM": ("菜心", "Choy sum"),
    "CAIXIN": ("菜心", "Choy sum"),
    "VEG-SHENGCAI": ("生菜", "Lettuce"),
    "VEG-DABAICAI": ("大白菜", "Napa cabbage"),
    "VEG-BAICAI": ("大白菜", "Napa cabbage"),
    "VEG-FANQIE": ("番茄", "Tomatoes"),
    "VEG-XIHONGSHI": ("番茄", "Tomatoes"),
    "VEG-HUANGGUA": ("黄瓜", "Cucumbers"),
    "VEG-TUDOU": ("土豆", "Potatoes"),
    "VEG-LUOBO": ("白萝卜", "White radish"),
    "VEG-JIELAN": ("芥兰", "Chinese kale"),
    "VEG-TONGCAI": ("通菜", "Water spinach"),
    "VEG-QIEZI": ("茄子", "Aubergines"),
    "VEG-QINGJIAO": ("青椒", "Green peppers"),
    "VEG-DONGGUA": ("冬瓜", "Winter melon"),
    "VEG-QINCAI": ("芹菜", "Celery"),
    "VEG-BOCAI": ("菠菜", "Spinach"),
    "VEG-DOUJIAO": ("豆角", "Green beans"),
}


class ProductNames(BaseSettings):
    """Extra or corrected names: ``TRACE_PRODUCT_NAMES='{"CODE": ["中文名", "English name"]}'``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_PRODUCT_", extra="ignore")

    names: dict[str, tuple[str, str]] = {}


@functools.cache
def _extra() -> dict[str, tuple[str, str]]:
    return {code.upper(): pair for code, pair in ProductNames().names.items()}


def name_of(code: str) -> ProductName:
    """The product's names; the code itself (``known`` false) for a code nobody named."""
    pair = _extra().get(code.upper()) or _TABLE.get(code.upper())
    return ProductName(*pair) if pair else ProductName(code, code, known=False)


def names(code: str) -> dict[str, str]:
    """``{"zh": ..., "en": ...}`` as the API serves a product's name."""
    found = name_of(code)
    return {"zh": found.zh, "en": found.en}
