"""The shapes of the EPCIS endpoints as models, for the OpenAPI document (``epcis/endpoints.py``).

The endpoints answer with bytes they build themselves (``orjson``), so these models describe rather than
serialize: the capture job, the versions answer, the ``EPCISQueryDocument``, an event, the capture document
and the problem details every error under ``/epcis`` leaves as. Events and documents are loosely typed: the
fields the standard defines are named and described, and ``extra="allow"`` keeps room for what the standard
allows besides (extension fields under a namespace of the document's ``@context``, the optional parts of an
event type). The whole check of a captured document is the standard's JSON Schema
(``contract/epcis/schema.py``), not these models.

:func:`problem_answers` gives a decorator the ``responses=`` value of the error statuses an operation can
answer, as ``application/problem+json`` with :class:`Problem` and one named example each;
:func:`components` gives the components those answers refer to (added by ``api/openapi.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from trace_service.epcis import problems

PROBLEM_REF = "#/components/schemas/Problem"
DOCUMENT_REF = "#/components/schemas/EpcisDocument"
STANDARD_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
ZS_CONTEXT = {"zs-trace": "https://trace.zs.example/epcis/"}
OPERATOR = "urn:zs-trace:operator:442000700001"

EventType = Literal["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent"]
Context = str | dict[str, Any] | list[str | dict[str, Any]]
Refused = Literal["document", "query", "path"]


def _drop_default(schema: dict[str, Any]) -> None:
    """An optional field is absent when it has nothing (never ``null``): no ``default: null`` in its schema."""
    schema.pop("default", None)


# -- examples ---------------------------------------------------------------------------------------------

_COMMISSIONED: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-12-01T06:10:00.000+08:00",
    "eventTimeZoneOffset": "+08:00",
    "epcList": [],
    "action": "ADD",
    "bizStep": "commissioning",
    "disposition": "active",
    "readPoint": {"id": OPERATOR},
    "bizLocation": {"id": OPERATOR},
    "quantityList": [{"epcClass": "urn:epc:class:lgtin:6901234.012345.NZ0417", "quantity": 960.0, "uom": "KGM"}],
    "bizTransactionList": [
        {"type": "urn:zs-trace:btt:customs_declaration", "bizTransaction": "urn:zs-trace:document:CD5120261201007"}
    ],
    "ilmd": {"cbvmda:countryOfOrigin": "NZ", "cbvmda:lotNumber": "NZ0417"},
}
_STORED: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-12-01T09:40:00.000+08:00",
    "eventTimeZoneOffset": "+08:00",
    "epcList": [],
    "action": "OBSERVE",
    "bizStep": "storing",
    "disposition": "in_progress",
    "readPoint": {"id": OPERATOR},
    "quantityList": [{"epcClass": "urn:epc:class:lgtin:6901234.012345.NZ0417", "quantity": 960.0, "uom": "KGM"}],
    "sensorElementList": [
        {
            "sensorMetadata": {"time": "2026-12-01T09:40:00.000+08:00", "deviceID": "urn:zs-trace:dev:CS07-T2"},
            "sensorReport": [{"type": "Temperature", "value": -18.5, "uom": "CEL"}],
        }
    ],
    "zs-trace:storage": "frozen",
}
_SERVED: dict[str, Any] = {
    **_COMMISSIONED,
    "eventID": "ni:///sha-256;5a0e4f1c9b3d7e2a6c8f0b1d3e5a7c9f1b3d5e7a9c1e3f5a7b9d1f3e5a7c9e1b?ver=CBV2.0",
    "recordTime": "2026-12-01T06:10:01.204Z",
}
VERSIONS_EXAMPLE: dict[str, Any] = {"epcisVersion": problems.EPCIS_VERSION, "cbvVersion": problems.CBV_VERSION}
EVENT_EXAMPLE: dict[str, Any] = {"@context": [STANDARD_CONTEXT], **_SERVED}
QUERY_EXAMPLE: dict[str, Any] = {
    "@context": [STANDARD_CONTEXT],
    "type": "EPCISQueryDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-12-01T10:00:00.000Z",
    "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": [_SERVED]}}},
}
JOB_EXAMPLE: dict[str, Any] = {
    "captureID": "6c0d7e0e-2f39-4d56-9a53-2b1f0f3b1c55",
    "createdAt": "2026-12-01T06:15:00.120Z",
    "finishedAt": "2026-12-01T06:15:00.410Z",
    "running": False,
    "success": True,
    "captureErrorBehaviour": "rollback",
    "errors": [],
}

CAPTURE_EXAMPLES: dict[str, dict[str, Any]] = {
    "application/json": {
        "commissioned": {
            "summary": "an imported lot commissioned at the importer, with its customs declaration",
            "value": {
                "@context": [STANDARD_CONTEXT],
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": "2026-12-01T06:15:00.000+08:00",
                "epcisBody": {"eventList": [_COMMISSIONED]},
            },
        }
    },
    "application/ld+json": {
        "stored_frozen": {
            "summary": "the lot stored at a cold store, a temperature reading and an extension field of our own",
            "value": {
                "@context": [STANDARD_CONTEXT, ZS_CONTEXT],
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": "2026-12-01T09:45:00.000+08:00",
                "epcisBody": {"eventList": [_STORED]},
            },
        }
    },
}


# -- models -----------------------------------------------------------------------------------------------


class EpcisVersions(BaseModel):
    """The versions of the standard this service speaks (also in the ``GS1-EPCIS-Version`` and
    ``GS1-CBV-Version`` headers of every answer under ``/epcis``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [VERSIONS_EXAMPLE]},
    )

    epcisVersion: str = Field(description="EPCIS version", examples=[problems.EPCIS_VERSION])
    cbvVersion: str = Field(description="Core Business Vocabulary version", examples=[problems.CBV_VERSION])


class Problem(BaseModel):
    """An error under ``/epcis``: RFC 7807 problem details, ``type`` one of the standard's exceptions."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": problems.VALIDATION,
                    "title": "the document is not a valid EPCIS 2.0 document; nothing was captured",
                    "status": 400,
                    "errors": [{"pointer": "/epcisBody/eventList/0/action", "detail": "'ADD' was expected"}],
                }
            ]
        }
    )

    type: str = Field(
        description="the EPCIS exception, e.g. `epcisException:ValidationException`", examples=[problems.VALIDATION]
    )
    title: str = Field(description="what went wrong, for a person; not to be parsed")
    status: int = Field(description="the HTTP status of the answer", ge=400, le=599)
    detail: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="more of what went wrong, when there is more"
    )
    errors: list[Any] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="one item per problem: a document's by JSON `pointer` (`/epcisBody/eventList/3/action`) and "
        "`detail`, a query's by `parameter` (and `value`)",
    )


class EpcisCaptureError(BaseModel):
    """An event of a capture job that the worker rejected (its dead-letter reason)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="`epcisException:ValidationException`", examples=[problems.VALIDATION])
    title: str = Field(description="the dead-letter code", examples=["lot_unknown"])
    status: int = Field(description="400", examples=[400])
    detail: str | None = Field(description="the dead-letter message")
    eventID: str = Field(description="the event's eventID as sent, else its event hash")
    eventHash: str = Field(description="the CBV 2.0 event hash (`ni:///sha-256;…?ver=CBV2.0`)")
    pointer: str = Field(description="the event in the document", examples=["/epcisBody/eventList/3"])


class EpcisCaptureJob(BaseModel):
    """A capture job: the document's events as the worker applies them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [JOB_EXAMPLE]})

    captureID: str = Field(description="the job's id, the last part of its `Location`")
    createdAt: str = Field(description="when the document was accepted (UTC)")
    finishedAt: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="when its last event was applied or rejected; absent while running",
    )
    running: bool = Field(description="true while any event is neither applied nor rejected")
    success: bool = Field(description="finished and no event rejected")
    captureErrorBehaviour: Literal["rollback"] = Field(
        description="a document with any invalid event is refused whole, before anything is accepted"
    )
    errors: list[EpcisCaptureError] = Field(description="the events the worker rejected")


class EpcisEvent(BaseModel):
    """An EPCIS 2.0 event as the query serves it: a captured event as it was sent (with `eventID`, its event
    hash when it had none, and `recordTime`), a domestic event rendered as EPCIS. The fields of all five
    event types are optional here; which a type takes is the standard's business. Extension fields
    (`zs-trace:storage`, another namespace of the document's `@context`) are kept."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_SERVED]})

    type: EventType = Field(description="the event type")
    eventTime: str = Field(description="when it happened (RFC 3339 with an offset)")
    eventTimeZoneOffset: str = Field(description="the offset of the place it happened", examples=["+08:00"])
    eventID: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="the id sent, else the CBV 2.0 event hash (always present when served)",
    )
    recordTime: str | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="when this service applied it (served, never taken from a capture)",
    )
    errorDeclaration: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="a correction of this event (`declarationTime`, `reason`, `correctiveEventIDs`)",
    )
    action: Literal["ADD", "OBSERVE", "DELETE"] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="all types but TransformationEvent"
    )
    bizStep: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="CBV short name or URI"
    )
    disposition: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="CBV short name or URI"
    )
    readPoint: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description='`{"id": uri}`'
    )
    bizLocation: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description='`{"id": uri}`'
    )
    epcList: list[str] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="ObjectEvent, TransactionEvent"
    )
    quantityList: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="`epcClass`, `quantity`, `uom`? (`KGM` for kilograms)",
    )
    parentID: str | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="Aggregation, Transaction, Association"
    )
    childEPCs: list[str] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="Aggregation, Association"
    )
    inputEPCList: list[str] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="TransformationEvent"
    )
    outputEPCList: list[str] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="TransformationEvent"
    )
    bizTransactionList: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="`type`?, `bizTransaction` (documents, customs declarations, certificates)",
    )
    sourceList: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="`type`, `source`"
    )
    destinationList: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="`type`, `destination` (an `owning_party` passes custody)",
    )
    sensorElementList: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="`sensorMetadata`?, `sensorReport` (temperatures become lot readings)",
    )
    ilmd: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        description="instance/lot master data (`cbvmda:countryOfOrigin`, `cbvmda:lotNumber`, …)",
    )


class EpcisEventWithContext(EpcisEvent):
    """One event, with the `@context` it was captured with."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EVENT_EXAMPLE]})

    context: Context = Field(alias="@context", description="the JSON-LD context of the event's document")


class EpcisResultsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    eventList: list[EpcisEvent] = Field(description="the page's events, oldest record first")


class EpcisQueryResults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queryName: Literal["SimpleEventQuery"]
    resultsBody: EpcisResultsBody


class EpcisQueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queryResults: EpcisQueryResults


class EpcisQueryDocument(BaseModel):
    """An ``EPCISQueryDocument``: one page of events. The next page's address is in the `Link` header."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [QUERY_EXAMPLE]},
    )

    context: Context = Field(alias="@context", description="the union of the contexts of the events, in order")
    type: Literal["EPCISQueryDocument"]
    schemaVersion: str = Field(examples=["2.0"])
    creationDate: str = Field(description="when the answer was made")
    epcisBody: EpcisQueryBody


class EpcisDocument(BaseModel):
    """An ``EPCISDocument`` of at most ``GS1-EPCIS-Capture-Limit`` events. This is the outline; the whole
    document is checked against the standard's JSON Schema, and every event must be capturable."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [CAPTURE_EXAMPLES["application/json"]["commissioned"]["value"]]}
    )

    context: Context | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_drop_default,
        alias="@context",
        description="the standard's context, and any namespaces of extensions",
    )
    type: Literal["EPCISDocument"]
    schemaVersion: str = Field(examples=["2.0"])
    creationDate: str = Field(description="when the document was made (RFC 3339)")
    epcisHeader: dict[str, Any] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_drop_default, description="optional master data"
    )
    epcisBody: dict[str, list[EpcisEvent]] = Field(description='`{"eventList": [...]}`')


# -- error answers ----------------------------------------------------------------------------------------

_TYPES = {
    400: problems.VALIDATION,
    401: problems.SECURITY,
    403: problems.SECURITY,
    404: problems.NO_SUCH_RESOURCE,
    406: problems.NOT_ACCEPTABLE,
    409: problems.ALREADY_EXISTS,
    413: problems.CAPTURE_LIMIT,
    415: problems.UNSUPPORTED_MEDIA_TYPE,
    503: problems.IMPLEMENTATION,
}
DESCRIPTIONS = {
    400: "The document, an event of it or a parameter is refused (`ValidationException`, `QueryParameterException`)",
    401: "No API key, or an unknown or revoked one (`SecurityException`)",
    403: "The key may not do this (`SecurityException`)",
    404: "No such capture job or event, or not one this key may see (`NoSuchResourceException`)",
    406: "`Accept` allows none of the JSON answers (`NotAcceptableException`)",
    409: "An event of the document clashes with one already held (`ResourceAlreadyExistsException`)",
    413: "More events than `GS1-EPCIS-Capture-Limit`, or a body over the body limit (`CaptureLimitExceededException`)",
    415: "The body is neither `application/json` nor `application/ld+json` (`UnsupportedMediaTypeException`)",
    503: "Postgres or the broker does not answer, or too much is in flight; retry after `Retry-After` seconds "
    "(`ImplementationException`)",
}
_EXAMPLE_TITLES = {
    400: "the document is not a valid EPCIS 2.0 document; nothing was captured",
    401: "an API key is required: Authorization: Bearer <key>",
    403: "this key may not report these events; nothing was captured",
    404: "no event urn:uuid:0b7e3a44-1c1e-4a53-9d8b-0e6c1c5f2f10",
    406: "the answers are JSON (application/json, application/ld+json); Accept allows none of them",
    409: "eventIDs of the document are taken; nothing was captured",
    413: "the document holds 1200 events; at most 1000 are captured per request",
    415: "send the document as application/json or application/ld+json",
    503: "a dependency (database or broker) is unavailable; retry later",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {"description": "the scheme expected", "schema": {"type": "string"}, "example": "Bearer"}
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 0},
            "example": 5,
        }
    },
}


def _example(status: int, type_: str, title: str, errors: list[Any] | None = None) -> dict[str, Any]:
    return {"summary": title, "value": problems.problem(status, type_, title, errors=errors)}


def _invalid_examples(refused: Refused) -> dict[str, Any]:
    if refused == "query":
        return {
            "unknown_parameter": _example(
                400, problems.QUERY_PARAMETER, "unknown query parameters: EQ_color", [{"parameter": "EQ_color"}]
            )
        }
    if refused == "path":
        # The app-wide check of request text (api/text.py), reshaped from its 422 by epcis/problems.py.
        unstorable = {"field": "event_id", "in": "path", "type": "string_not_storable", "message": "NUL is refused"}
        return {"unstorable": _example(400, problems.QUERY_PARAMETER, "the request is not valid", [unstorable])}
    pointer = {
        "pointer": "/epcisBody/eventList/0/action",
        "detail": "'ADDED' is not one of ['ADD', 'OBSERVE', 'DELETE']",
    }
    return {"invalid_document": _example(400, problems.VALIDATION, _EXAMPLE_TITLES[400], [pointer])}


def problem_answers(*statuses: int, refused: Refused = "document") -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` value documenting ``statuses`` as problem details, one named example each; ``refused``
    says what a 400 refuses (the document, a query parameter, a path parameter)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status == 400:
            named = _invalid_examples(refused)
        else:
            named = {"problem": _example(status, _TYPES[status], _EXAMPLE_TITLES[status])}
        answer: dict[str, Any] = {
            "description": DESCRIPTIONS[status],
            "content": {problems.MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}, "examples": named}},
        }
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
        out[status] = answer
    return out


def components() -> dict[str, Any]:
    """The components that :func:`problem_answers` and the capture's request body refer to."""
    out: dict[str, Any] = {}
    for model in (Problem, EpcisDocument):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        out |= schema.pop("$defs", {})
        out[model.__name__] = schema
    return out
