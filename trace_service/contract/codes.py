"""Code formats (contract section 1) and the checks that a regular expression cannot express."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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
    """A farm code is the 6-digit region of the farm followed by a 4-digit sequence (not ``0000``)."""
    if len(code) != 10 or not (code.isascii() and code.isdigit()):
        raise ValueError(f"farm code {code!r} must be exactly 10 digits: 6-digit region + 4-digit sequence")
    if not is_real_region(code[:6]):
        raise ValueError(
            f"farm code {code!r} does not start with a real region code: "
            f"{code[:6]} does not start with a real province code (GB/T 2260)"
        )
    if code[6:] == "0000":
        raise ValueError(f"farm code {code!r} has sequence 0000; sequences start at 0001")
    return code


def check_ear_tag(tag: str) -> str:
    """An ear tag is ``1`` (pig) + 6-digit region + 8-digit serial (not all zeros)."""
    if len(tag) != 15 or not (tag.isascii() and tag.isdigit()):
        raise ValueError(f"ear tag {tag!r} must be exactly 15 digits: 1 + 6-digit region + 8-digit serial")
    if tag[0] != "1":
        raise ValueError(f"ear tag {tag!r} does not start with 1 (pig)")
    if not is_real_region(tag[1:7]):
        raise ValueError(
            f"ear tag {tag!r} does not carry a real region code: "
            f"{tag[1:7]} does not start with a real province code (GB/T 2260)"
        )
    if tag[7:] == "00000000":
        raise ValueError(f"ear tag {tag!r} has serial 00000000; serials start at 00000001")
    return tag


# -- GS1 check digits and the lot codes the service issues ---------------------------------------------

ISSUED_CODE_LENGTH = 20  # <operator-seq 6><yyMMdd 6><serial 7><check 1>
ISSUER_SEQ_MAX = 999_999
ISSUED_SERIAL_MAX = 9_999_999


def gs1_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of ``body`` (the digits before the check digit).

    Weights 3, 1, 3, 1, ... from the rightmost digit of the body; the check digit brings the weighted
    sum to a multiple of 10. ``gs1_check_digit("629104150021") == 3`` (GTIN-13 6291041500213).
    """
    if not body or not (body.isascii() and body.isdigit()):
        raise ValueError(f"a GS1 check digit needs a body of digits, not {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def has_issued_code_form(code: str) -> bool:
    """Is this shaped like a lot code the service issues: exactly 20 ASCII digits?"""
    return len(code) == ISSUED_CODE_LENGTH and code.isascii() and code.isdigit()


def has_valid_check_digit(code: str) -> bool:
    """Is the last digit of this all-digit code the GS1 check digit of the others?"""
    return len(code) >= 2 and code.isascii() and code.isdigit() and gs1_check_digit(code[:-1]) == int(code[-1])


@dataclass(frozen=True)
class IssuedCode:
    """The parts of an issued lot code. ``day`` is the issue date in Asia/Shanghai."""

    issuer_seq: int
    day: date
    serial: int

    @property
    def code(self) -> str:
        return format_issued_code(self.issuer_seq, self.day, self.serial)


def format_issued_code(issuer_seq: int, day: date, serial: int) -> str:
    """``<issuer_seq 6><yyMMdd 6><serial 7><check 1>``."""
    if not 1 <= issuer_seq <= ISSUER_SEQ_MAX:
        raise ValueError(f"issuer sequence {issuer_seq} is outside 1..{ISSUER_SEQ_MAX}")
    if not 1 <= serial <= ISSUED_SERIAL_MAX:
        raise ValueError(f"serial {serial} is outside 1..{ISSUED_SERIAL_MAX}")
    body = f"{issuer_seq:06d}{day:%y%m%d}{serial:07d}"
    return body + str(gs1_check_digit(body))


def parse_issued_code(code: str) -> IssuedCode | None:
    """The issuer sequence, day and serial of a code the service could have issued; None otherwise.

    A code qualifies when it has the issued form (20 digits), its check digit is right, its date part is
    a real date (20yy) and its sequence and serial are not zero. Whether it was actually issued, and to
    whom, is a question for the ``code_blocks`` table.
    """
    if not has_issued_code_form(code) or not has_valid_check_digit(code):
        return None
    seq, serial = int(code[:6]), int(code[12:19])
    try:
        day = date(2000 + int(code[6:8]), int(code[8:10]), int(code[10:12]))
    except ValueError:
        return None
    if seq == 0 or serial == 0:
        return None
    return IssuedCode(issuer_seq=seq, day=day, serial=serial)


def is_valid_issued_code(code: str) -> bool:
    """Could the service have issued this code? (Form, check digit, date; see :func:`parse_issued_code`.)"""
    return parse_issued_code(code) is not None


def issuer_prefix(code: str) -> int | None:
    """The issuer sequence a code would carry if the service had issued it: the first 6 digits of a code of
    the issued form (20 ASCII digits), else None. Whether that sequence belongs to an issuer is a question
    for the ``code_issuers`` table."""
    return int(code[:6]) if has_issued_code_form(code) else None


def issued_code_problem(code: str) -> str | None:
    """Why ``code`` cannot be a code the service issued (wrong GS1 check digit, no real date, a zero
    serial), or None when it could be one, or is not of the issued form at all.

    Contract section 1: the check applies only to codes whose first 6 digits are the sequence of an
    operator the service issued codes to; the caller decides that (it needs the database). Other systems'
    20-digit codes (the national and provincial platforms print them without a GS1 check digit) are
    accepted as they are, so this is never a field validator of the event models.
    """
    if not has_issued_code_form(code):
        return None
    lead = (
        f"lot code {code!r} starts with {code[:6]}, a prefix of codes this service issues "
        "(<issuer 6><yyMMdd 6><serial 7><check 1>), but"
    )
    if not has_valid_check_digit(code):
        return (
            f"{lead} fails its check digit: the last digit must be the GS1 mod-10 check digit of the first 19 "
            f"(expected {gs1_check_digit(code[:-1])})"
        )
    if parse_issued_code(code) is None:
        return f"{lead} its date part {code[6:12]} is not a real date (yyMMdd) or its serial is 0000000"
    return None
