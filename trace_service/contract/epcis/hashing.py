"""The CBV 2.0 event hash (``ni:///sha-256;<hex>?ver=CBV2.0``), the idempotency key of EPCIS capture.

The standard (CBV 2.0, "EPCIS Event Hash ID") builds a *pre-hash string* of an event: its fields in a fixed order
(event type, times, the EPC lists, action, bizStep, ..., sensor elements, then ILMD and user extensions), each
``key=value``, values canonical (CBV short names and URNs as web-vocabulary URIs, EPC URNs and Digital Links as
constrained canonical Digital Links at id.gs1.org, times in UTC with milliseconds, numbers without trailing
zeros, extension keys as ``{namespace}local``, lists sorted), and hashes it with SHA-256. ``eventID``,
``recordTime`` and ``errorDeclaration`` are left out, so an event keeps its hash when a repository names it or
when it is later declared in error.

Hashes must equal those of the standard's reference implementation (PyPI ``epcis-event-hash-generator``), which
has its own reading of some rules (tests/test_epcis_pure.py checks every event of the test documents against it).
The points where it reads the standard in a particular way, and that this implementation follows:

* ``bizTransactionList``, ``sourceList`` and ``destinationList`` come after the sensor elements, sorted with
  ILMD and the user extensions; each entry keeps its keys in the order the JSON gives them.
* a bare value anywhere in the event that is the last segment (after ``-`` or ``/``) of exactly one of the
  event's vocabulary URIs (https://ref.gs1.org/cbv/..., https://gs1.org/voc/...) is replaced by that URI.
* only the prefixes the document's own ``@context`` objects declare are expanded (keys as ``{ns}local``, values
  as ``ns`` + local); prefixes of the standard context (``cbvmda:``, ``gs1:``) stay as written.
* numbers are read as binary floating point (``"0012"`` is ``12``), booleans are ``True``/``False``.
* times are normalised (UTC, milliseconds) in the ordered fields only, not inside ILMD or extensions.

This implementation covers what EPCIS systems send in practice: the five event types with their standard
fields, EPC URNs and Digital Links of the common keys, ILMD and extensions under declared prefixes. For an event
with anything else (a CURIE in a vocabulary field, an exotic identifier, an extension point used in an unusual
way, a remote context other than the standard's) it hands the event to the reference implementation, which is
exact but about four times slower (:func:`event_hash` does this by itself; :func:`fast_event_hash` does not).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

from trace_service.contract.codes import gs1_check_digit

# Fixed for the life of the service: every stored envelope id is derived from it.
EPCIS_NAMESPACE = uuid.UUID("5b0c8f64-3c8e-5f0e-9a57-1e0b7d6f2a14")

STANDARD_CONTEXTS = frozenset(
    {
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        "https://gs1.github.io/EPCIS/epcis-context.jsonld",
    }
)
_DOCUMENT_TEMPLATE_TIME = "2000-01-01T00:00:00Z"


class Unsupported(Exception):
    """The event holds a construct this implementation does not reproduce; the reference must hash it."""


def envelope_id(hash_: str, *, error_declaration: bool) -> uuid.UUID:
    """The domestic event id of a captured EPCIS event: uuid5 of the event hash. An event that declares an
    earlier one in error (it has the same hash) gets an id of its own."""
    return uuid.uuid5(EPCIS_NAMESPACE, hash_ + "#errorDeclaration" if error_declaration else hash_)


def ni_uri(pre_hash: str) -> str:
    return "ni:///sha-256;" + hashlib.sha256(pre_hash.encode("utf-8")).hexdigest() + "?ver=CBV2.0"


class Unhashable(ValueError):
    """Neither this implementation nor the reference can hash the event."""


_PAIR_LISTS = ("bizTransactionList", "sourceList", "destinationList")


def pairs_in_order(event: dict[str, Any]) -> dict[str, Any]:
    """The event with each entry of its business transaction, source and destination lists keeping ``type``
    first. The reference implementation hashes such an entry's keys in the order the JSON gives them, so the same
    event re-serialised with its keys in another order would hash differently; the standard's order is type,
    then the value, which is what this puts every entry in (and what a writer gives in practice)."""
    if not any(isinstance(event.get(name), list) for name in _PAIR_LISTS):
        return event
    out = dict(event)
    for name in _PAIR_LISTS:
        items = event.get(name)
        if isinstance(items, list):
            out[name] = [
                {**({"type": item["type"]} if "type" in item else {}), **item} if isinstance(item, dict) else item
                for item in items
            ]
    return out


def event_hash(event: dict[str, Any], context: object) -> str:
    """The CBV 2.0 hash of one event of a document whose ``@context`` is ``context``.

    Raises :class:`Unhashable` (a ``ValueError``) for an event neither implementation can read."""
    event = pairs_in_order(event)
    try:
        return ni_uri(pre_hash_string(event, context))
    except Unsupported:
        pass
    try:
        return reference_event_hash(event, context)
    except Exception as exc:  # the reference is third-party code: anything it raises means "cannot hash"
        raise Unhashable(f"the CBV event hash of this event cannot be computed ({type(exc).__name__})") from None


def fast_event_hash(event: dict[str, Any], context: object) -> str:
    """:func:`event_hash` without the fallback: raises :class:`Unsupported` where the reference is needed."""
    return ni_uri(pre_hash_string(event, context))


# -- the reference, for what this module does not cover -----------------------------------------------------


def reference_event_hash(event: dict[str, Any], context: object) -> str:
    """The reference implementation's hash of the event, as the only event of a document with ``context``.

    Remote contexts other than the standard's are left out (no network is used; the reference would fetch
    them). The reference keeps the prefixes of every document it has read in a module global; they are
    cleared first, so that the hash of an event depends on the event and its context only.
    """
    # imported here: the reference loads PyLD and is needed for a few events only
    from epcis_event_hash_generator import hash_generator, json_to_py  # type: ignore[import-untyped]

    json_to_py._namespaces.clear()  # its module global, see above
    doc = {
        "@context": _offline_context(context),
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _DOCUMENT_TEMPLATE_TIME,
        "epcisBody": {"eventList": [event]},
    }
    with warnings.catch_warnings():
        # it reads its bundled copy of the standard context with importlib.resources.open_text, deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        events = json_to_py.event_list_from_epcis_document_json(_deep_copy(doc))
        hashes: list[str] = hash_generator.epcis_hashes_from_events(events)
    if len(hashes) != 1:
        raise ValueError("the reference event hash implementation could not read this event")
    return hashes[0]


def _offline_context(context: object) -> list[Any]:
    items = context if isinstance(context, list) else [context] if context is not None else []
    kept = [c for c in items if isinstance(c, dict) or (isinstance(c, str) and c in STANDARD_CONTEXTS)]
    if not any(isinstance(c, str) for c in kept):
        kept.insert(0, "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld")
    return kept


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# -- the context: which prefixes a document declares -------------------------------------------------------

# The prefixes the standard context defines, with their IRIs: a CURIE of one of them in a vocabulary field
# expands (JSON-LD) to the IRI, which the reference then uses to replace bare values (see _vocab).
_STANDARD_PREFIX_IRIS: dict[str, str] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
# Prefixes some versions of the standard context define too: a CURIE of one of them is left to the reference.
_STANDARD_PREFIXES = frozenset({*_STANDARD_PREFIX_IRIS, "sh", "schema", "rdf", "skos", "dc"})
_TERM_KEYWORDS = frozenset({"@id", "@type"})


def _namespaces(context: object) -> dict[str, str]:
    """The prefixes a document's own context objects declare, prefix → IRI.

    A term whose value is a string is a prefix. So is a term definition object with an ``@id`` (a string), for a
    term that is not itself a compact IRI. A term definition with only ``@type`` (``{"rail:x": {"@type": "@id"}}``,
    a coercion of the values of a field) declares no prefix: the pre-hash string holds values as they are
    written, so it changes nothing. A prefix the standard context defines too (``cbvmda``) takes the document's
    IRI, later objects of the list over earlier ones, as JSON-LD reads a context. The reference implementation
    cannot read either kind of context (it fails on a term definition object, and on redefining a protected
    term of the standard context), so the hashes of such events have no oracle (docs/epcis.md, "Conformance").
    Anything else (``@vocab``, ``@base``, scoped contexts, ``@container``, ...) is left to the reference.
    """
    items = context if isinstance(context, list) else [context] if context is not None else []
    declared: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            if item not in STANDARD_CONTEXTS:
                raise Unsupported("a remote context other than the standard's")
        elif isinstance(item, dict):
            for key, value in item.items():
                if key.startswith("@"):
                    raise Unsupported("a JSON-LD keyword in a context")
                if isinstance(value, str):
                    declared[key] = value
                elif isinstance(value, dict) and value and set(value) <= _TERM_KEYWORDS:
                    iri = value.get("@id")
                    if iri is None:
                        continue  # a type coercion only
                    if not isinstance(iri, str) or ":" in key or iri.startswith("@"):
                        raise Unsupported("a context term definition that is not a prefix")
                    declared[key] = iri
                else:
                    raise Unsupported("a context term that is not a plain prefix")
        else:
            raise Unsupported("a context that is neither a URL nor an object")
    return declared


# -- canonical values ---------------------------------------------------------------------------------------

_VOCAB_URNS = (
    ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
    ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
    ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-"),
)
_SAFE = r"[0-9A-Za-z_.\-]"  # characters that need no percent-encoding in a Digital Link (GS1 DL table 7-1)


def _gtin(company: str, item: str) -> str:
    body = item[0] + company + item[1:]
    return body + str(gs1_check_digit(body))


def _check(body: str) -> str:
    return body + str(gs1_check_digit(body))


def _cp_split(total: int, longest: int = 12) -> str:
    # company prefix of 6..longest digits, then a reference that brings the two to `total` digits
    return "|".join(rf"\d{{{c}}}\.\d{{{total - c}}}" for c in range(6, longest + 1))


_EPC_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (
        re.compile(rf"^urn:epc:id:sgtin:((?:{_cp_split(13)}))\.({_SAFE}{{1,20}})$"),
        lambda m: "https://id.gs1.org/01/" + _gtin(*m.group(1).split(".")) + "/21/" + m.group(2),
    ),
    (
        re.compile(rf"^urn:epc:class:lgtin:((?:{_cp_split(13)}))\.({_SAFE}{{1,20}})$"),
        lambda m: "https://id.gs1.org/01/" + _gtin(*m.group(1).split(".")) + "/10/" + m.group(2),
    ),
    (
        re.compile(rf"^urn:epc:idpat:sgtin:((?:{_cp_split(13)}))\.\*$"),
        lambda m: "https://id.gs1.org/01/" + _gtin(*m.group(1).split(".")),
    ),
    (
        re.compile(rf"^urn:epc:id:sscc:((?:{_cp_split(17)}))$"),
        lambda m: "https://id.gs1.org/00/" + _sscc(*m.group(1).split(".")),
    ),
    (
        re.compile(r"^urn:epc:id:sgln:(\d{6,12})\.(\d{0,6})\.(" + _SAFE + r"{1,20})$"),
        lambda m: _gln_uri("414", m.group(1), m.group(2), m.group(3)),
    ),
    (
        re.compile(r"^urn:epc:id:pgln:(\d{6,12})\.(\d{0,6})$"),
        lambda m: _gln_uri("417", m.group(1), m.group(2), None),
    ),
    # GRAI and GDTI with a 12-digit company prefix (no asset or document type) are left to the reference, which
    # does not convert them.
    (  # GRAI: "0", the company prefix and the asset type (12 digits), the check digit, then the serial
        re.compile(rf"^urn:epc:id:grai:((?:{_cp_split(12, 11)}))\.({_SAFE}{{1,16}})$"),
        lambda m: "https://id.gs1.org/8003/" + _check("0" + m.group(1).replace(".", "")) + m.group(2),
    ),
    (  # GDTI: the company prefix and the document type (12 digits), the check digit, then the serial
        re.compile(rf"^urn:epc:id:gdti:((?:{_cp_split(12, 11)}))\.({_SAFE}{{1,17}})$"),
        lambda m: "https://id.gs1.org/253/" + _check(m.group(1).replace(".", "")) + m.group(2),
    ),
    (  # GSRN: the company prefix and the service reference (17 digits), then the check digit
        re.compile(rf"^urn:epc:id:gsrn:((?:{_cp_split(17)}))$"),
        lambda m: "https://id.gs1.org/8018/" + _check(m.group(1).replace(".", "")),
    ),
    (  # GIAI: the company prefix, then the individual asset reference (30 characters at most in all)
        re.compile(rf"^urn:epc:id:giai:(\d{{6,12}})\.({_SAFE}{{1,24}})$"),
        lambda m: "https://id.gs1.org/8004/" + m.group(1) + m.group(2) if len(m.group(1) + m.group(2)) <= 30 else None,
    ),
]


def _sscc(company: str, rest: str) -> str:
    return _check(rest[0] + company + rest[1:])


def _gln_uri(key: str, company: str, ref: str, extension: str | None) -> str | None:
    if len(company) + len(ref) != 12:
        return None
    uri = f"https://id.gs1.org/{key}/" + _check(company + ref)
    if extension is not None and extension != "0":
        uri += "/254/" + extension
    return uri


_DL_KEYS = (
    "01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc|253|gdti|401|ginc|402|gsin"
    "|8003|grai|8004|giai"
)
_DL_KEY_SEGMENT = re.compile(rf"/({_DL_KEYS})/\d{{4}}")
_DL_SIMPLE = re.compile(
    rf"^https?://[^/?#@]+"
    rf"(/01/\d{{14}}(?:/10/{_SAFE}{{1,20}})?(?:/21/{_SAFE}{{1,20}})?|/00/\d{{18}}|/414/\d{{13}}(?:/254/{_SAFE}{{1,20}})?"
    rf"|/417/\d{{13}}|/8003/\d{{14}}{_SAFE}{{0,16}}|/8004/\d{{4}}{_SAFE}{{0,26}}|/253/\d{{13}}{_SAFE}{{0,17}}"
    rf"|/8018/\d{{18}})(?:\?[^#]*)?$"
)
_DL_LOT_AND_SERIAL = re.compile(r"/10/[^/]+(?=/21/)")


def _digital_link(value: str) -> str | None:
    """The constrained canonical Digital Link of an identifier, None when the value is no GS1 identifier."""
    if "." not in value:
        return None
    if value.startswith("urn:epc:"):
        for pattern, build in _EPC_PATTERNS:
            m = pattern.match(value)
            if m:
                built: str | None = build(m)
                if built is None:
                    break
                return built
        raise Unsupported("an EPC URI of a scheme or form not covered here")
    if value.startswith(("http://", "https://")) and _DL_KEY_SEGMENT.search(value):
        m = _DL_SIMPLE.match(value)
        if not m:
            raise Unsupported("a Digital Link of a form not covered here")
        # the most fine-granular key only: a serial makes the lot redundant
        return "https://id.gs1.org" + _DL_LOT_AND_SERIAL.sub("", m.group(1))
    return None


def _number_text(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number):
        return text
    if math.isinf(number):
        raise Unsupported("an infinite number")
    if int(number) == number:
        return str(int(number))
    return str(number)


def _canon(text: str) -> str:
    for urn, web in _VOCAB_URNS:
        text = text.replace(urn, web)
    text = _number_text(text)
    link = _digital_link(text)
    return link if link is not None else text


def _time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Unsupported("a time this parser does not read") from None
    if moment.tzinfo is None:
        raise Unsupported("a time without an offset")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+08:00 has no UTC time in Python's range
        raise Unsupported("a time outside the range of UTC times") from None
    micro = round(moment.microsecond, -3)
    if micro >= 1_000_000:
        raise Unsupported("a time that rounds up to the next second")
    return moment.replace(microsecond=micro).isoformat(timespec="milliseconds")[:-6] + "Z"


# -- the event as a tree ------------------------------------------------------------------------------------

_EVENT_KEYS = frozenset(
    {
        "type",
        "eventTime",
        "eventTimeZoneOffset",
        "eventID",
        "recordTime",
        "errorDeclaration",
        "certificationInfo",
        "parentID",
        "epcList",
        "inputEPCList",
        "childEPCs",
        "quantityList",
        "childQuantityList",
        "inputQuantityList",
        "outputEPCList",
        "outputQuantityList",
        "action",
        "transformationID",
        "bizStep",
        "disposition",
        "persistentDisposition",
        "readPoint",
        "bizLocation",
        "bizTransactionList",
        "sourceList",
        "destinationList",
        "sensorElementList",
        "ilmd",
    }
)
_IGNORED = frozenset({"eventID", "recordTime", "errorDeclaration", "type"})
_SCALARS = ("eventTime", "eventTimeZoneOffset", "certificationInfo", "parentID")
_EPC_LISTS_1 = ("epcList", "inputEPCList", "childEPCs")
_QTY_LISTS_1 = ("quantityList", "childQuantityList", "inputQuantityList")
_QTY_FIELDS = ("epcClass", "quantity", "uom")
_ACTION_ETC = ("action", "transformationID", "bizStep", "disposition")
_METADATA = (
    "time",
    "startTime",
    "endTime",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "bizRules",
)
_REPORT = (
    "type",
    "exception",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "time",
    "microorganism",
    "chemicalSubstance",
    "value",
    "component",
    "stringValue",
    "booleanValue",
    "hexBinaryValue",
    "uriValue",
    "minValue",
    "maxValue",
    "meanValue",
    "sDev",
    "percRank",
    "percValue",
    "uom",
    "coordinateReferenceSystem",
)

# Vocabulary fields: a bare CBV term expands to the web URI of its vocabulary (the standard context says so).
_BIZ_STEPS = frozenset(
    [
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
        "sensor_reporting",
        "sampling",
    ]
)
_DISPOSITIONS = frozenset(
    [
        "active",
        "container_closed",
        "damaged",
        "destroyed",
        "dispensed",
        "disposed",
        "encoded",
        "expired",
        "in_progress",
        "in_transit",
        "inactive",
        "no_pedigree_match",
        "non_sellable_other",
        "partially_dispensed",
        "recalled",
        "reserved",
        "retail_sold",
        "returned",
        "sellable_accessible",
        "sellable_not_accessible",
        "stolen",
        "unknown",
        "available",
        "completeness_verified",
        "completeness_inferred",
        "conformant",
        "container_open",
        "mismatch_instance",
        "mismatch_class",
        "mismatch_quantity",
        "needs_replacement",
        "non_conformant",
        "unavailable",
    ]
)
_BTTS = frozenset(
    [
        "bol",
        "cert",
        "desadv",
        "inv",
        "pedigree",
        "po",
        "poc",
        "prodorder",
        "recadv",
        "rma",
        "testprd",
        "testres",
        "upevt",
    ]
)
_SDTS = frozenset({"owning_party", "possessing_party", "location"})
_REASONS = frozenset({"did_not_occur", "incorrect_data"})
_MEASUREMENTS = frozenset(
    [
        "AbsoluteHumidity",
        "AbsorbedDose",
        "AbsorbedDoseRate",
        "Acceleration",
        "Radioactivity",
        "Altitude",
        "AmountOfSubstance",
        "AmountOfSubstancePerUnitVolume",
        "Angle",
        "AngularAcceleration",
        "AngularMomentum",
        "AngularVelocity",
        "Area",
        "Capacitance",
        "Conductance",
        "Conductivity",
        "Count",
        "Density",
        "Dimensionless",
        "DoseEquivalent",
        "DoseEquivalentRate",
        "DynamicViscosity",
        "ElectricCharge",
        "ElectricCurrent",
        "ElectricCurrentDensity",
        "ElectricFieldStrength",
        "Energy",
        "Exposure",
        "Force",
        "Frequency",
        "Illuminance",
        "Inductance",
        "Irradiance",
        "KinematicViscosity",
        "Length",
        "LinearMomentum",
        "Luminance",
        "LuminousFlux",
        "LuminousIntensity",
        "MagneticFlux",
        "MagneticFluxDensity",
        "MagneticVectorPotential",
        "Mass",
        "MassConcentration",
        "MassFlowRate",
        "MassPerAreaTime",
        "MemoryCapacity",
        "MolalityOfSolute",
        "MolarEnergy",
        "MolarMass",
        "MolarVolume",
        "Power",
        "Pressure",
        "RadiantFlux",
        "RadiantIntensity",
        "RelativeHumidity",
        "Resistance",
        "Resistivity",
        "SolidAngle",
        "SpecificVolume",
        "Speed",
        "SurfaceDensity",
        "SurfaceTension",
        "Temperature",
        "Time",
        "Torque",
        "Voltage",
        "Volume",
        "VolumeFlowRate",
        "VolumeFraction",
        "VolumetricFlux",
        "Wavenumber",
    ]
)
_ALERTS = frozenset({"ALARM_CONDITION", "ERROR_CONDITION"})
_COMPONENTS = frozenset(
    [
        "x",
        "y",
        "z",
        "axial_distance",
        "azimuth",
        "height",
        "spherical_radius",
        "polar_angle",
        "elevation_angle",
        "easting",
        "northing",
        "latitude",
        "longitude",
        "altitude",
    ]
)
_VOCAB_PREFIXES = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def _vocab(value: Any, terms: frozenset[str], web: str, found: set[str], declared: dict[str, str]) -> None:
    if not isinstance(value, str):
        raise Unsupported("a vocabulary value that is not a string")
    if value in terms:
        found.add(web + value)
        return
    m = _ABSOLUTE.match(value)
    if not m:
        raise Unsupported("a bare vocabulary value that is not a CBV term")
    prefix, rest = value[: m.end() - 1], value[m.end() :]
    iri = value
    if not rest.startswith("//"):  # a compact URI (CURIE): JSON-LD expands it with the prefix's IRI
        if prefix in declared:
            iri = declared[prefix] + rest
        elif prefix in _STANDARD_PREFIX_IRIS:
            iri = _STANDARD_PREFIX_IRIS[prefix] + rest
        elif prefix in _STANDARD_PREFIXES:
            raise Unsupported("a compact URI of a prefix not covered here")
    # The value itself stays as written (a prefix of the document's context is expanded by _Reader.text, one of
    # the standard context is not); its expansion only counts for the replacement of bare values.
    if iri.startswith(_VOCAB_PREFIXES):
        found.add(iri)


def _vocabulary_uris(event: dict[str, Any], declared: dict[str, str]) -> set[str]:
    """The CBV/GS1 vocabulary URIs the JSON-LD expansion of the event would hold (the reference replaces bare
    values that end one of them)."""
    found: set[str] = set()
    cbv = "https://ref.gs1.org/cbv/"
    if "bizStep" in event:
        _vocab(event["bizStep"], _BIZ_STEPS, cbv + "BizStep-", found, declared)
    if "disposition" in event:
        _vocab(event["disposition"], _DISPOSITIONS, cbv + "Disp-", found, declared)
    persistent = event.get("persistentDisposition")
    if isinstance(persistent, dict):
        for key in ("set", "unset"):
            for value in persistent.get(key, []) or []:
                _vocab(value, _DISPOSITIONS, cbv + "Disp-", found, declared)
    for list_key, item_key, terms, web in (
        ("bizTransactionList", "type", _BTTS, cbv + "BTT-"),
        ("sourceList", "type", _SDTS, cbv + "SDT-"),
        ("destinationList", "type", _SDTS, cbv + "SDT-"),
    ):
        for item in event.get(list_key, []) or []:
            if isinstance(item, dict) and item_key in item:
                _vocab(item[item_key], terms, web, found, declared)
    declaration = event.get("errorDeclaration")
    if isinstance(declaration, dict) and "reason" in declaration:
        _vocab(declaration["reason"], _REASONS, cbv + "ER-", found, declared)
    for element in event.get("sensorElementList", []) or []:
        for report in element.get("sensorReport", []) if isinstance(element, dict) else []:
            if not isinstance(report, dict):
                continue
            if "type" in report:
                _vocab(report["type"], _MEASUREMENTS, "https://gs1.org/voc/", found, declared)
            if "exception" in report:
                _vocab(report["exception"], _ALERTS, "https://gs1.org/voc/", found, declared)
            if "component" in report:
                _vocab(report["component"], _COMPONENTS, cbv + "Comp-", found, declared)
    _collect_vocab_strings(event, found)
    return found


def _collect_vocab_strings(node: Any, found: set[str]) -> None:
    if isinstance(node, str):
        if node.startswith(_VOCAB_PREFIXES):
            found.add(node)
    elif isinstance(node, dict):
        for value in node.values():
            _collect_vocab_strings(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect_vocab_strings(value, found)


class _Reader:
    """Turns the values and keys of one event into their canonical text."""

    def __init__(self, declared: dict[str, str], vocabulary: set[str]) -> None:
        self.declared = declared
        self.vocabulary = vocabulary
        self.replacements: dict[str, str | None] = {}

    def _bare(self, text: str) -> str:
        if text not in self.replacements:
            matches = [u for u in self.vocabulary if u.endswith(("-" + text, "/" + text))]
            self.replacements[text] = matches[0] if len(matches) == 1 else None
        return self.replacements[text] or text

    def text(self, value: Any) -> str:
        """The value as the reference reads it, before canonicalisation (and stripped)."""
        if isinstance(value, str):
            text = self._bare(value)
            head, sep, rest = text.partition(":")
            if sep and head in self.declared:
                text = self.declared[head].replace("{", "").replace("}", "") + rest
            return text.strip()
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return repr(value)
        raise Unsupported("a value that is neither text, a number nor a boolean")

    def key(self, key: str) -> str:
        head, sep, rest = key.partition(":")
        if sep and head in self.declared:
            return "{" + self.declared[head] + "}" + rest
        return key

    def value(self, value: Any) -> str:
        text = self.text(value)
        return "=" + _canon(text) if text else ""

    # -- the generic part: ILMD, user extensions, and the lists the reference sorts with them

    def generic(self, obj: dict[str, Any]) -> list[str]:
        parts: list[str] = []
        for raw_key, value in obj.items():
            if raw_key in ("#text", "rdfs:comment", "comment") or raw_key.startswith("@"):
                raise Unsupported("a JSON-LD keyword or comment inside an event")
            key = self.key(raw_key)
            if (
                key.endswith("List")
                or key in ("childEPCs", "inputEPC", "outputEPC", "quantity")
                or raw_key
                in (
                    "bizTransaction",
                    "source",
                    "destination",
                )
            ):
                raise Unsupported("an extension key the reference restructures")
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    parts.append(key + self.joined_generic(item))
                elif isinstance(item, list):
                    raise Unsupported("a list inside a list")
                else:
                    parts.append(key + self.value(item))
        return parts

    def joined_generic(self, obj: dict[str, Any]) -> str:
        parts = self.generic(obj)
        if len(parts) > 1:
            parts.sort()
        return "".join(parts)

    def pairs(self, name: str, items: Any, id_key: str) -> str:
        if not isinstance(items, list):
            raise Unsupported("a list field that is not a list")
        if not items:
            raise Unsupported("an empty list of business transactions, sources or destinations")
        rendered: list[str] = []
        for item in items:
            if not isinstance(item, dict) or set(item) - {"type", id_key} or id_key not in item:
                raise Unsupported("a business transaction, source or destination of an unusual shape")
            rendered.append("".join(k + self.value(v) for k, v in item.items()))
        if len(rendered) > 1:
            rendered.sort()
        return name + "".join(rendered)

    # -- the ordered part

    def extension_point(self, name: str, obj: Any, order: tuple[str, ...], repeated: frozenset[str]) -> str:
        """A standard object with an extension point (readPoint, sensorMetadata, ...): its fields in order, then
        its extensions sorted."""
        if not isinstance(obj, dict):
            raise Unsupported("an object field that is not an object")
        extensions: dict[str, Any] = {}
        for key in obj:
            if key in order or key in repeated:
                continue
            expanded = self.key(key)
            if not (expanded.startswith("{") and "/}" in expanded):
                raise Unsupported("an unknown key in a standard object")
            extensions[key] = obj[key]
        if extensions and (len(obj) <= 1 or any("eventTime" in k or "action" in k for k in map(self.key, obj))):
            raise Unsupported("extensions the reference would not gather")
        out = name
        for field in order:
            if field not in obj:
                continue
            value = obj[field]
            if isinstance(value, dict | list):
                raise Unsupported("a structured value where the standard has a scalar")
            text = self.text(value)
            if text:
                out += field + "=" + (_time(text) if "time" in field.lower() else _canon(text))
        if extensions:
            out += self.joined_generic(extensions)
        return out


def pre_hash_string(event: dict[str, Any], context: object) -> str:
    """The pre-hash string of an event (raises :class:`Unsupported` for what the reference must read)."""
    kind = event.get("type")
    if not isinstance(kind, str) or "eventTime" not in event:
        raise Unsupported("no event type or event time")
    declared = _namespaces(context)
    reader = _Reader(declared, _vocabulary_uris(event, declared))
    extensions: dict[str, Any] = {}
    for key in event:
        if key not in _EVENT_KEYS:
            expanded = reader.key(key)
            if expanded == key:
                raise Unsupported("an unknown event field or an undeclared prefix")
            extensions[key] = event[key]

    out = ["eventType=" + kind]
    _scalars(out, reader, event, _SCALARS)
    for name in _EPC_LISTS_1:
        out.append(_epc_list(reader, name, event.get(name)))
    for name in _QTY_LISTS_1:
        out.append(_quantity_list(reader, name, event.get(name)))
    out.append(_epc_list(reader, "outputEPCList", event.get("outputEPCList")))
    out.append(_quantity_list(reader, "outputQuantityList", event.get("outputQuantityList")))
    _scalars(out, reader, event, _ACTION_ETC)
    if "persistentDisposition" in event:
        out.append(_persistent(reader, event["persistentDisposition"]))
    for name in ("readPoint", "bizLocation"):
        if name in event:
            point = reader.extension_point(name, event[name], ("id",), frozenset())
            out.append(point if point != name else "")
    if "sensorElementList" in event:
        out.append(_sensor_elements(reader, event["sensorElementList"]))

    # The rest, sorted as one: the three lists of pairs, ILMD and the user extensions.
    rest: list[str] = []
    for name, id_key in (
        ("bizTransactionList", "bizTransaction"),
        ("sourceList", "source"),
        ("destinationList", "destination"),
    ):
        if name in event:
            rest.append(reader.pairs(name, event[name], id_key))
    if "ilmd" in event:
        ilmd = event["ilmd"]
        if not isinstance(ilmd, dict):
            raise Unsupported("ILMD that is not an object")
        rest.append("ilmd" + reader.joined_generic(ilmd))
    rest.extend(reader.generic(extensions))
    rest.sort()
    return "".join(out) + "".join(rest)


def _scalars(out: list[str], reader: _Reader, event: dict[str, Any], names: tuple[str, ...]) -> None:
    """Append ``name=value`` for each of ``names`` the event has with a value, in that order: the event time
    canonical as a time, the rest as text."""
    for name in names:
        if name in event:
            value = event[name]
            if isinstance(value, dict | list):
                raise Unsupported("a structured value where the standard has a scalar")
            text = reader.text(value)
            if text:
                out.append(name + "=" + (_time(text) if name == "eventTime" else _canon(text)))


def _epc_list(reader: _Reader, name: str, items: Any) -> str:
    if items is None:
        return ""
    if not isinstance(items, list):
        raise Unsupported("an EPC list that is not a list")
    values: list[str] = []
    for item in items:
        if isinstance(item, dict | list):
            raise Unsupported("an EPC that is not a string")
        text = reader.text(item)
        if text:
            values.append("epc=" + _canon(text))
    values.sort()
    return name + "".join(values) if values else ""


def _quantity_list(reader: _Reader, name: str, items: Any) -> str:
    if items is None:
        return ""
    if not isinstance(items, list):
        raise Unsupported("a quantity list that is not a list")
    values: list[str] = []
    for item in items:
        if not isinstance(item, dict) or set(item) - set(_QTY_FIELDS):
            raise Unsupported("a quantity element of an unusual shape")
        element = ""
        for field in _QTY_FIELDS:
            if field in item:
                text = reader.text(item[field])
                if text:
                    element += field + "=" + _canon(text)
        if element:
            values.append("quantityElement" + element)
        elif item:
            raise Unsupported("an empty quantity element")
    values.sort()
    return name + "".join(values) if values else ""


def _persistent(reader: _Reader, value: Any) -> str:
    if not isinstance(value, dict) or set(value) - {"set", "unset"}:
        raise Unsupported("a persistent disposition of an unusual shape")
    out = "persistentDisposition"
    for key in ("set", "unset"):
        items = value.get(key, [])
        if not isinstance(items, list):
            raise Unsupported("a persistent disposition list that is not a list")
        out += "".join(sorted(key + "=" + _canon(reader.text(v)) for v in items if reader.text(v)))
    return out if out != "persistentDisposition" else ""


_REPORT_KEYS = frozenset(_REPORT)
_METADATA_KEYS = frozenset(_METADATA)


def _sensor_elements(reader: _Reader, elements: Any) -> str:
    if not isinstance(elements, list):
        raise Unsupported("a sensor element list that is not a list")
    rendered: list[str] = []
    for element in elements:
        if not isinstance(element, dict):
            raise Unsupported("a sensor element that is not an object")
        body = ""
        if "sensorMetadata" in element:
            metadata = element["sensorMetadata"]
            text = reader.extension_point("sensorMetadata", metadata, _METADATA, frozenset())
            if text == "sensorMetadata":
                raise Unsupported("an empty sensor metadata object")
            body += text
        reports = element.get("sensorReport", [])
        if not isinstance(reports, list):
            raise Unsupported("a sensor report that is not a list")
        texts = []
        for report in reports:
            text = reader.extension_point("sensorReport", report, _REPORT, frozenset())
            if text == "sensorReport":
                raise Unsupported("an empty sensor report")
            texts.append(text)
        body += "".join(sorted(texts))
        extensions = {k: v for k, v in element.items() if k not in ("sensorMetadata", "sensorReport")}
        for key in extensions:
            expanded = reader.key(key)
            if not (expanded.startswith("{") and "/}" in expanded):
                raise Unsupported("an unknown key in a sensor element")
        if extensions:
            if len(element) <= 1 or any("eventTime" in k or "action" in k for k in map(reader.key, element)):
                raise Unsupported("extensions the reference would not gather")
            body += reader.joined_generic(extensions)
        if not body:
            raise Unsupported("an empty sensor element")
        rendered.append("sensorElement" + body)
    rendered.sort()
    return "sensorElementList" + "".join(rendered) if rendered else ""
