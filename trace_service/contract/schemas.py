"""JSON Schema (2020-12) documents of the event envelope and of every event type, for integrators.

The documents are generated from the contract models (:mod:`trace_service.contract.events`), never written by hand,
and committed under ``schemas/``; ``trace-service schemas --check`` and a test catch drift. Checks that
pydantic runs as Python functions are translated here: the province prefix of region codes, farm codes
and ear tags becomes an extra ``pattern``; the three-decimal limit on weights and prices cannot be
expressed reliably (``multipleOf`` with binary floats misfires in many validators), so it is written
into the description. An after-validator this module does not know is an error, so a new check in the
models cannot silently go undocumented.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from trace_service.contract.codes import (
    PROVINCE_PREFIXES,
    CodePatterns,
    check_ear_tag,
    check_farm_code,
    check_region,
)
from trace_service.contract.events import (
    CODE_CHECKS,
    Catalogue,
    CodeCheck,
    EventType,
    _not_china,
    _three_decimals,
    _two_decimals,
    check_epcis_envelope,
    check_epcis_event,
    some_certificate,
    storable_text,
    storable_time,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://trace.zs.example/schemas/v1/"
ENVELOPE_FILE = "envelope.schema.json"

# RFC 3339 date-time with a mandatory offset: what AwareDatetime accepts, minus pydantic's leniencies
# (missing seconds, a space for T, +0800). `format` alone is only an annotation in 2020-12 and most
# validators skip it, which would let a naive time through.
AWARE_DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_PROVINCE = "(" + "|".join(sorted(PROVINCE_PREFIXES)) + ")"

# What the service checks that no JSON Schema here expresses. Kept in every document's description.
NOT_EXPRESSED = (
    "Checked by the service but not expressible in this schema: "
    "(1) weights and prices have at most 3 decimals; "
    "(2) occurred_at may lie at most 5 minutes in the future of the server clock; "
    "(3) event_id is the idempotency key: the same id with different content is a conflict "
    "(HTTP 409, or a dead letter with error-code conflicting_duplicate on Kafka); "
    "(4) the operator must be the posting key's operator or one registered under it, and active; "
    "regulator.* events are accepted only from regulator keys; "
    "(5) a lot code that carries a service-issued prefix must pass its GS1 mod-10 check digit. "
    "The province prefix of region codes, farm codes and ear tags is expressed as an extra pattern. "
    "Code patterns are the contract defaults; a deployment may override them (TRACE_CODE_*). "
    "Integrity rules (certificates, ASF, mass balance...) raise alerts after acceptance; they never reject."
)

# (title, description) per event type, from contract section 3.
EVENT_DOCS: dict[str, tuple[str, str]] = {
    EventType.FARM_PIGS_DISPATCHED: (
        "farm.pigs_dispatched 出栏/产地检疫",
        "A farm dispatches pigs with an origin quarantine certificate. Creates the live-pig lot data.lot.",
    ),
    EventType.SLAUGHTER_PIGS_RECEIVED: (
        "slaughter.pigs_received 进厂查验登记",
        "A slaughterhouse registers arriving pigs. Creates the slaughter batch data.lot, linked from the farm "
        "lot (data.from_lot, else matched by quarantine certificate number).",
    ),
    EventType.SLAUGHTER_ASF_TESTED: (
        "slaughter.asf_tested 非洲猪瘟检测",
        "A slaughterhouse records the ASF test of a batch. A positive result stops the batch and its descendants.",
    ),
    EventType.SLAUGHTER_BATCH_SLAUGHTERED: (
        "slaughter.batch_slaughtered 屠宰/肉品品质检验",
        "A slaughterhouse slaughters a batch. Creates one product lot per output, each linked from the batch. "
        "quality_cert_number may follow later in lot.tested; shipping without one raises an alert.",
    ),
    EventType.PRODUCE_HARVESTED: (
        "produce.harvested 产地出具合格证",
        "A planting base harvests produce under a compliance certificate. Creates the produce lot data.lot.",
    ),
    EventType.TRADE_SHIPPED: (
        "trade.shipped 交易/出场",
        "A seller ships quantity from its lots to a buyer under a voucher number (unique per seller).",
    ),
    EventType.TRADE_RECEIVED: (
        "trade.received 进场",
        "A buyer receives goods under the seller's voucher. Creates the buyer's lots, each linked from from_lot.",
    ),
    EventType.LOT_TESTED: (
        "lot.tested 检测",
        "A market or slaughterhouse records a test of a lot (e.g. pesticide rapid test, value = inhibition %). "
        "A fail stops the lot.",
    ),
    EventType.RETAIL_SOLD: (
        "retail.sold 零售",
        "A retailer, stall or supermarket sells from a lot. Creates the sale sale_code (the trace code printed "
        "on the receipt), a leaf linked from the lot.",
    ),
    EventType.LOT_DISPOSED: (
        "lot.disposed 无害化处理/销毁",
        "A holder disposes of quantity (weight_kg or head) of a lot; the lot may become disposed.",
    ),
    EventType.REGULATOR_LOT_HELD: (
        "regulator.lot_held 监管控制",
        "A regulator stops a lot, and with scope downstream every lot descended from it.",
    ),
    EventType.REGULATOR_LOT_RELEASED: (
        "regulator.lot_released 解除控制",
        "A regulator releases a hold on a lot, and with scope downstream on its descendants.",
    ),
    # -- cold chain (issue 14) --
    EventType.IMPORT_CUSTOMS_CLEARED: (
        "import.customs_cleared 入境通关",
        "An importer enters imported meat through customs: creates the imported lot with its origin country, "
        "entry port, storage and entry documents.",
    ),
    EventType.IMPORT_DOCUMENTS_SUPPLIED: (
        "import.documents_supplied 补充入境单证",
        "The holder of an imported lot supplies its inspection and quarantine or disinfection certificate later "
        "(at least one of the two).",
    ),
    EventType.COLDSTORE_STORED_IN: ("coldstore.stored_in 冷库入库", "The holder of a lot puts it into a cold store."),
    EventType.COLDSTORE_RELEASED: ("coldstore.released 冷库出库", "The holder of a lot takes it out of a cold store."),
    EventType.LOT_TEMPERATURE_RECORDED: (
        "lot.temperature_recorded 温度记录",
        "The holder of a lot reports temperature readings of it (°C, each with its time).",
    ),
    EventType.EPCIS_EVENT: (
        "epcis.event GS1 EPCIS 2.0 事件",
        "One GS1 EPCIS 2.0 event as captured by POST /epcis/capture (or produced straight to Kafka), with its "
        "document's @context. Its event_id is uuid5 of the CBV event hash; the lots it names join the trace graph "
        "as docs/epcis.md describes.",
    ),
}


def _after(pattern: str | None, description: str) -> Callable[[JsonSchemaValue], JsonSchemaValue]:
    def annotate(inner: JsonSchemaValue) -> JsonSchemaValue:
        out = dict(inner)
        if pattern is not None:
            out["allOf"] = [*out.get("allOf", []), {"pattern": pattern}]
        out["description"] = description
        return out

    return annotate


# Each after-validator of the contract models, and how its check shows in JSON Schema.
_AFTER_VALIDATORS: dict[Callable[..., Any], Callable[[JsonSchemaValue], JsonSchemaValue]] = {
    _three_decimals: _after(None, "At most 3 decimal places (checked by the service)."),
    _two_decimals: _after(None, "At most 2 decimal places (checked by the service)."),
    some_certificate: _after(None, "At least one of the two certificates (checked by the service)."),
    check_epcis_event: _after(
        None,
        "A GS1 EPCIS 2.0 event that the standard's JSON Schema accepts (with the document's @context), whose "
        "lots the city can name (docs/epcis.md; checked by the service).",
    ),
    check_epcis_envelope: _after(
        None,
        "An epcis.event's event_id is uuid5 of its CBV 2.0 event hash and its occurred_at is the event's "
        "eventTime (docs/epcis.md; checked by the service).",
    ),
    _not_china: _after(
        "^(?!CN$)", "ISO 3166-1 alpha-2 country code, upper case; not CN (an import comes from abroad)."
    ),
    storable_text: _after(None, "Text without the NUL character or lone surrogates (checked by the service)."),
    storable_time: _after(
        None,
        "RFC 3339 date-time with an offset, e.g. 2026-11-25T05:10:00+08:00, from 1970-01-01T00:00:00Z up to "
        "2100-01-01T00:00:00Z; naive times and unix seconds are rejected.",
    ),
    check_region: _after(
        f"^{_PROVINCE}[0-9]{{4}}$",
        "GB/T 2260 region code: 6 digits, the first two a real province code.",
    ),
    check_farm_code: _after(
        f"^{_PROVINCE}[0-9]{{4}}",
        "Farm code (畜禽养殖代码): the farm's 6-digit region code (real province prefix) + 4-digit sequence.",
    ),
    check_ear_tag: _after(
        f"^1{_PROVINCE}[0-9]{{4}}",
        "Ear tag (畜禽标识): 1 (pig) + 6-digit region code (real province prefix) + 8-digit serial.",
    ),
}


class ContractSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, plus what the contract's custom checks and strict times mean in JSON Schema.

    A code field's check (:class:`~trace_service.contract.events.CodeCheck`) is its ``pattern``: that of
    ``patterns`` (the contract defaults here; :func:`generator_for` a deployment's)."""

    patterns: CodePatterns = CodePatterns()

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        inner = super().function_after_schema(schema)
        function = schema["function"]["function"]
        if isinstance(function, CodeCheck) and CODE_CHECKS.get(function.kind) is function:
            return {**inner, "pattern": getattr(self.patterns, function.kind)}
        annotate = _AFTER_VALIDATORS.get(function)
        if annotate is None:
            raise ValueError(
                f"no JSON Schema rendering for validator {getattr(function, '__qualname__', function)!r}: "
                "describe what it checks in trace_service/contract/schemas.py"
            )
        return annotate(inner)

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        out = super().datetime_schema(schema)
        if schema.get("tz_constraint") == "aware":
            out = {
                **out,
                "pattern": AWARE_DATE_TIME,
                "description": "RFC 3339 date-time with an offset, e.g. 2026-11-25T05:10:00+08:00; naive times "
                "are rejected.",
            }
        return out

    def uuid_schema(self, schema: core_schema.UuidSchema) -> JsonSchemaValue:
        return {**super().uuid_schema(schema), "pattern": UUID_PATTERN}


_GENERATORS: dict[CodePatterns, type[ContractSchemaGenerator]] = {CodePatterns(): ContractSchemaGenerator}


def generator_for(patterns: CodePatterns) -> type[ContractSchemaGenerator]:
    """The schema generator that renders these code patterns (one per configuration, kept)."""
    found = _GENERATORS.get(patterns)
    if found is None:
        found = _GENERATORS[patterns] = type(
            "ContractSchemaGenerator", (ContractSchemaGenerator,), {"patterns": patterns}
        )
    return found


def _document(name: str, title: str, description: str, schema: JsonSchemaValue) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "$id": BASE_URI + name,
        **schema,
        "title": title,
        "description": description,
    }


def generate_schemas(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Every schema document, keyed by its file name relative to the ``schemas/`` folder."""
    generator = generator_for(catalogue.patterns)
    envelope = catalogue.event.json_schema(mode="validation", schema_generator=generator)
    documents = {
        ENVELOPE_FILE: _document(
            ENVELOPE_FILE,
            "Trace event envelope (any event type)",
            "One event as posted to POST /v1/events or produced to the trace.events.v1 topic: the envelope "
            "(event_id, event_type, occurred_at, operator) and the data of its event_type. Unknown fields are "
            "rejected. " + NOT_EXPRESSED,
            envelope,
        )
    }
    for event_type in sorted(catalogue.models):
        if event_type not in EVENT_DOCS:
            raise ValueError(f"event type {event_type!r} has no title and description in schemas.EVENT_DOCS")
        title, summary = EVENT_DOCS[event_type]
        name = f"events/{event_type}.schema.json"
        model = catalogue.models[event_type]
        schema = model.model_json_schema(mode="validation", schema_generator=generator)
        documents[name] = _document(name, title, f"{summary} Unknown fields are rejected. {NOT_EXPRESSED}", schema)
    return documents


def dump_schema(document: dict[str, Any]) -> str:
    """The committed text of one document: sorted keys, UTF-8 as is, 2-space indent, final newline."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def render_schemas(catalogue: Catalogue) -> dict[str, str]:
    """Every schema document as the exact text committed under ``schemas/``."""
    return {name: dump_schema(document) for name, document in generate_schemas(catalogue).items()}
