"""EPCIS 2.0 documents checked against the standard's own JSON Schema (``vendor/EPCIS-JSON-Schema.json``).

The schema is GS1's, vendored unchanged (vendor/README.md). It is read and compiled by jsonschema-rs once, on
first use, and the compiled validator is kept for the life of the process: validating a document of 1,000 events
takes a few milliseconds. Formats (``uri``, ``date-time``) are checked, as draft 7 asks.
"""

from __future__ import annotations

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
    """The standard's JSON Schema, as vendored."""
    return dict(_schema())


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("trace_service.contract.epcis").joinpath("vendor", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema_rs.Draft7Validator:
    # the schema says draft-07 in its $schema
    return jsonschema_rs.Draft7Validator(_schema(), validate_formats=True)


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
