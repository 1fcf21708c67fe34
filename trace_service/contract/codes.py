"""Code formats (contract section 1) and the checks that a regular expression cannot express."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# GB/T 2260 province-level prefixes: the first two digits of every real region code.
PROVINCE_PREFIXES: frozenset[str] = frozenset(
    [str(n) for n in range(11, 16)]
    + [str(n) for n in range(21, 24)]
    + [str(n) for n in range(31, 38)]
    + [str(n) for n in range(41, 47)]
    + [str(n) for n in range(50, 55)]
    + [str(n) for n in range(61, 66)]
    + ["71", "81", "82"]
)


class CodePatterns(BaseModel):
    """The default formats. The service reads overrides from settings (``TRACE_CODE_*``)."""

    model_config = ConfigDict(frozen=True)

    operator: str = r"^[0-9A-Z]{6,20}$"
    lot: str = r"^[0-9A-Z]{8,32}$"
    farm: str = r"^[0-9]{10}$"
    ear_tag: str = r"^1[0-9]{14}$"
    region: str = r"^[0-9]{6}$"
    voucher: str = r"^[0-9A-Za-z-]{4,40}$"
    certificate: str = r"^[0-9A-Za-z-]{4,40}$"


def is_real_region(code: str) -> bool:
    """A 6-digit region code whose first two digits are a real province code."""
    return len(code) == 6 and code.isdigit() and code[:2] in PROVINCE_PREFIXES


def check_region(code: str) -> str:
    if not is_real_region(code):
        raise ValueError(f"region code {code!r} does not start with a real province code (GB/T 2260)")
    return code


def check_farm_code(code: str) -> str:
    """A farm code is the 6-digit region of the farm followed by a 4-digit sequence."""
    check_region(code[:6])
    return code


def check_ear_tag(tag: str) -> str:
    """An ear tag is ``1`` (pig) + 6-digit region + 8-digit serial."""
    if tag[:1] != "1":
        raise ValueError(f"ear tag {tag!r} does not start with 1 (pig)")
    check_region(tag[1:7])
    return tag
