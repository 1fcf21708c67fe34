"""EPCIS 2.0 documents checked against the standard's own JSON Schema (``vendor/EPCIS-JSON-Schema.json``).

The schema is GS1's, vendored unchanged (vendor/README.md). It is read and compiled by jsonschema-rs once, on
first use, and the compiled validator is kept for the life of the process: validating a document of 1,000 events
takes a few milliseconds. Formats (``uri``, ``date-time``) are checked, as draft 7 asks.

The vendored file lacks a few fields that the standard's own example documents use (docs/epcis.md,
"Conformance"). They are allowed by :data:`AMENDMENTS`, applied to a deep copy of the loaded schema (the file stays
as GS1 ships it); every other rule of the schema is left as strict as it is.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

EVENT_TYPES: frozenset[str] = frozenset(
    {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"}
)

SCHEMA_FILE = "EPCIS-JSON-Schema.json"
SCHEMA_ID = "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
MAX_PROBLEMS = 50  # a document with thousands of bad events is answered with the first few, not megabytes
MAX_MESSAGE = 300  # anyOf failures quote the whole instance; the pointer says where, the message what


@dataclass(frozen=True)
class Problem:
    """One way a document breaks the standard: where (a JSON pointer into the document) and what."""

    pointer: str
    message: str


def pointer(path: list[str | int] | tuple[str | int, ...]) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indexes: ``["epcisBody", "eventList", 3]`` →
    ``/epcisBody/eventList/3``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def schema() -> dict[str, Any]:
    """The standard's JSON Schema, as vendored (validation uses :func:`amended_schema`)."""
    return dict(_schema())


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("trace_service.contract.epcis").joinpath("vendor", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# A JSON-LD blank node identifier (``_:document1``): what a document that has no IRI of its own may give as ``id``.
BLANK_NODE = r"^_:[^\s]+$"

AMENDMENTS: tuple[tuple[str, str], ...] = (
    (
        "document implements",
        'an EPCIS document (and a query document) may say which application standards it implements: "implements" '
        "is a URI or a list of URIs",
    ),
    ("document id", 'a document\'s "id" may be a JSON-LD blank node identifier ("_:document1") as well as a URI'),
    (
        "sensor element type",
        'a sensor element may carry its JSON-LD class as "type": SensorElement, epcis:SensorElement or '
        "https://ref.gs1.org/epcis/SensorElement",
    ),
    ("sensor report bizRules", 'a sensor report may name its business rules as "bizRules", a URI, as its metadata may'),
)
"""What the service accepts beyond the vendored schema (name, what), applied by :func:`amended_schema`."""

SENSOR_ELEMENT_TYPES = ("SensorElement", "epcis:SensorElement", "https://ref.gs1.org/epcis/SensorElement")


def _allow(definition: dict[str, Any], name: str, rule: dict[str, Any]) -> None:
    """Let an object definition have the property ``name`` (validated by ``rule``): a property of its own, and a
    name its ``propertyNames`` enumeration lists."""
    definition["properties"][name] = rule
    for alternative in definition["propertyNames"]["anyOf"]:
        if "enum" in alternative:
            alternative["enum"] = [*alternative["enum"], name]
            return
    raise LookupError(f"no enumeration of property names to add {name!r} to")  # the vendored file changed


def amended_schema() -> dict[str, Any]:
    """The vendored schema with :data:`AMENDMENTS` (a new copy: the caller may keep or change it)."""
    amended = copy.deepcopy(_schema())
    definitions = amended["definitions"]
    uri = {"$ref": "#/definitions/uri"}
    for document in ("epcisDocument", "epcisQueryDocument"):
        _allow(definitions[document], "implements", {"anyOf": [uri, {"type": "array", "minItems": 1, "items": uri}]})
        definitions[document]["properties"]["id"] = {
            "anyOf": [{"$ref": "#/definitions/id"}, {"type": "string", "pattern": BLANK_NODE}]
        }
    _allow(definitions["sensorElement"], "type", {"type": "string", "enum": list(SENSOR_ELEMENT_TYPES)})
    _allow(definitions["sensorReport"], "bizRules", uri)
    return amended


@cache
def _validator() -> jsonschema_rs.Draft7Validator:
    # the schema says draft-07 in its $schema
    return jsonschema_rs.Draft7Validator(amended_schema(), validate_formats=True)


def _problems(instance: object, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    validator = _validator()
    if validator.is_valid(instance):  # the fast answer for the usual case
        return []
    found: list[Problem] = []
    for error in validator.iter_errors(instance):
        message = error.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        found.append(Problem(pointer((*prefix, *error.instance_path)), message))
        if len(found) >= MAX_PROBLEMS:
            break
    return found


def validate_document(doc: object) -> list[Problem]:
    """The problems of an EPCIS document (``type`` ``EPCISDocument``) against the standard's schema; empty when
    it is valid. A JSON value that is not a document at all is one problem at the root."""
    if not isinstance(doc, dict) or doc.get("type") != "EPCISDocument":
        return [Problem("/type", 'an EPCIS document is a JSON object whose "type" is "EPCISDocument"')]
    return _problems(doc)


def validate_query_document(doc: object) -> list[Problem]:
    """The problems of an ``EPCISQueryDocument`` (what ``GET /epcis/events`` answers) against the schema."""
    if not isinstance(doc, dict) or doc.get("type") != "EPCISQueryDocument":
        return [Problem("/type", 'an EPCIS query document is a JSON object whose "type" is "EPCISQueryDocument"')]
    return _problems(doc)


def validate_event(event: object, context: object) -> list[Problem]:
    """The problems of one event as a standalone document the standard would accept.

    The schema asks a standalone event for its own ``@context``; an event of a document has none, so the
    document's ``context`` is supplied (the standard context when it is None). Pointers are into the event
    (``/action``), not into the copy.
    """
    if not isinstance(event, dict):
        return [Problem("", "an EPCIS event is a JSON object")]
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        return [Problem("/type", "an EPCIS event's type is one of: " + ", ".join(sorted(EVENT_TYPES)))]
    standalone = event if "@context" in event else {**event, "@context": context or STANDARD_CONTEXT_URL}
    return _problems(standalone)


STANDARD_CONTEXT_URL = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
