"""The identifiers EPCIS events use for the city's lots and operators (docs/epcis.md, "Identifiers").

* A city lot is ``urn:zs-trace:lot:{code}`` and a city operator ``urn:zs-trace:operator:{code}`` (prefixes are
  settings: ``TRACE_EPCIS_LOT_URI``, ``TRACE_EPCIS_OPERATOR_URI``).
* A GS1 lot, an LGTIN (``urn:epc:class:lgtin:{company prefix}.{indicator + item reference}.{lot}``) or a GS1
  Digital Link with a GTIN and a lot (``https://{any host}/01/{gtin14}/10/{lot}``), is the city lot
  ``{gtin14}{LOT upper-cased}`` when that matches the lot code pattern. A GS1 lot whose city code would not
  match it (a date lot ``2019-10-07``, a lot with ``-``) is a lot the city cannot name (:class:`UnnamedLot`): it
  is kept and queryable but does not join the graph.
* What is really invalid is refused (:class:`LotError`): a city lot URI that does not end in a lot code, an
  LGTIN whose company prefix and item reference do not make 13 digits.
* Every other identifier (SGTIN, SSCC, GRAI, ...) is kept and queryable but is not a lot of the graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import unquote

from trace_service.contract.codes import gs1_check_digit

DEFAULT_LOT_PREFIX = "urn:zs-trace:lot:"
DEFAULT_OPERATOR_PREFIX = "urn:zs-trace:operator:"

# EPC Tag Data Standard: the company prefix has 6 to 12 digits and the indicator + item reference makes it up
# to 13, the GTIN without its check digit.
_LGTIN = re.compile(r"^urn:epc:class:lgtin:(\d{6,12})\.(\d{1,7})\.(.{1,20})$")
# GS1 Digital Link: the key 01 (GTIN, 14 digits; shorter GTINs are left-padded) with the qualifier 10 (lot),
# possibly after a path prefix of the resolver and before a query string.
_DIGITAL_LINK_LOT = re.compile(r"^https?://[^/?#]+(?:/[^?#]*)?/01/(\d{8}|\d{12,14})/10/([^/?#]+)/?(?:[?#].*)?$")


@dataclass(frozen=True)
class URIs:
    """The URI prefixes of the city's lots and operators."""

    lot_prefix: str = DEFAULT_LOT_PREFIX
    operator_prefix: str = DEFAULT_OPERATOR_PREFIX


@dataclass(frozen=True)
class LotError:
    """A lot identifier that is not valid (capture refuses the event)."""

    message: str


@dataclass(frozen=True)
class UnnamedLot:
    """A valid GS1 lot that has no city lot code (stored and queryable, not in the graph)."""

    identifier: str
    reason: str


def lot_uri(code: str, uris: URIs) -> str:
    return uris.lot_prefix + code


def operator_uri(code: str, uris: URIs) -> str:
    return uris.operator_prefix + code


def operator_code(uri: str, uris: URIs) -> str | None:
    """The city operator a URI names, or None when it names none."""
    if uri.startswith(uris.operator_prefix) and len(uri) > len(uris.operator_prefix):
        return uri[len(uris.operator_prefix) :]
    return None


def gtin14(company_prefix: str, indicator_and_item: str) -> str | None:
    """The GTIN-14 of an LGTIN/SGTIN's company prefix and indicator digit + item reference: the indicator, the
    company prefix, the item reference, then the GS1 mod-10 check digit. None when the parts do not make 13
    digits."""
    if len(company_prefix) + len(indicator_and_item) != 13 or not indicator_and_item:
        return None
    body = indicator_and_item[0] + company_prefix + indicator_and_item[1:]
    return body + str(gs1_check_digit(body))


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _city_lot(gtin: str, lot: str, original: str, lot_pattern: str) -> str | UnnamedLot:
    code = gtin + unquote(lot).upper()
    if _compiled(lot_pattern).fullmatch(code):
        return code
    return UnnamedLot(
        original,
        f"lot cannot be named in the city's codes: {original} would be lot {code!r}, which does not match "
        f"the lot code pattern {lot_pattern}",
    )


def lot_code(uri: str, uris: URIs, lot_pattern: str) -> str | LotError | UnnamedLot | None:
    """The city lot code a URI names: None when the URI is not a lot identifier; an :class:`UnnamedLot` when it
    is a GS1 lot that cannot be a city lot code; a :class:`LotError` when it is not a valid lot identifier."""
    if uri.startswith(uris.lot_prefix):
        code = uri[len(uris.lot_prefix) :].upper()
        if code and _compiled(lot_pattern).fullmatch(code):
            return code
        return LotError(f"lot cannot be named in the city's codes: {uri} does not end in a lot code ({lot_pattern})")
    m = _LGTIN.match(uri)
    if m:
        gtin = gtin14(m.group(1), m.group(2))
        if gtin is None:
            return LotError(
                f"lot cannot be named in the city's codes: {uri} is not an LGTIN (13 digits before the lot)"
            )
        return _city_lot(gtin, m.group(3), uri, lot_pattern)
    m = _DIGITAL_LINK_LOT.match(uri)
    if m:
        gtin = m.group(1).rjust(14, "0")
        return _city_lot(gtin, m.group(2), uri, lot_pattern)
    return None
