"""The event envelope (contract section 2) and the catalogue of event types (section 3).

Every model is declared here, at module level; the code patterns are settings, read from the validation
context (:class:`Catalogue` passes them), so that a code format is changed in one place without making
types at run time. Everything is validated by pydantic-core from the raw JSON bytes: unknown fields are
rejected, times must carry an offset, codes must match their pattern.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

from trace_service.contract.codes import (
    CodePatterns,
    check_ear_tag,
    check_farm_code,
    check_region,
    issued_code_problem,
    issuer_prefix,
)
from trace_service.contract.epcis import hashing as epcis_hashing
from trace_service.contract.epcis import mapping as epcis_mapping
from trace_service.contract.epcis import schema as epcis_schema
from trace_service.contract.epcis.schema import Problem
from trace_service.contract.epcis.uris import URIs

MAX_KG = 100_000.0  # 100 t: no single lot or line of this trade weighs more
MAX_HEAD = 100_000
MAX_LIST = 1000

V = TypeVar("V")
M = TypeVar("M", bound=BaseModel)


class EventType(StrEnum):
    FARM_PIGS_DISPATCHED = "farm.pigs_dispatched"
    SLAUGHTER_PIGS_RECEIVED = "slaughter.pigs_received"
    SLAUGHTER_ASF_TESTED = "slaughter.asf_tested"
    SLAUGHTER_BATCH_SLAUGHTERED = "slaughter.batch_slaughtered"
    PRODUCE_HARVESTED = "produce.harvested"
    TRADE_SHIPPED = "trade.shipped"
    TRADE_RECEIVED = "trade.received"
    LOT_TESTED = "lot.tested"
    RETAIL_SOLD = "retail.sold"
    LOT_DISPOSED = "lot.disposed"
    REGULATOR_LOT_HELD = "regulator.lot_held"
    REGULATOR_LOT_RELEASED = "regulator.lot_released"
    # -- cold chain: imported meat, cold stores, temperatures (issue 14) --
    IMPORT_CUSTOMS_CLEARED = "import.customs_cleared"
    IMPORT_DOCUMENTS_SUPPLIED = "import.documents_supplied"
    COLDSTORE_STORED_IN = "coldstore.stored_in"
    COLDSTORE_RELEASED = "coldstore.released"
    LOT_TEMPERATURE_RECORDED = "lot.temperature_recorded"
    # -- GS1 EPCIS 2.0: a captured EPCIS event (docs/epcis.md) --
    EPCIS_EVENT = "epcis.event"


def _three_decimals(value: float) -> float:
    if round(value, 3) != value:
        raise ValueError("at most 3 decimals")
    return value


# -- what the store can keep ------------------------------------------------------------------------
# The API and the worker validate with the same types, so nothing the database (or the rules' date
# arithmetic) cannot take gets past intake: a NUL, a lone surrogate, a time outside the range below, a
# number that is not finite. Such an event is a 422 with its field at the API and a dead letter
# (``invalid_event``) on the Kafka path, never a crash of the worker.

TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def storable_text(value: str) -> str:
    """Text Postgres can store: no NUL character and no lone surrogate."""
    if "\x00" in value:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text may not contain a lone surrogate") from None
    return value


def _rfc3339_only(value: Any) -> Any:
    # pydantic also reads digits (or a string of digits) as unix seconds; the contract's times are RFC 3339
    # strings only. The string is parsed by pydantic-core after this check (lax, as strict mode would refuse
    # a string handed on by a Python validator).
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) < 19 or value[4:5] != "-" or value[10:11] not in ("T", "t", " "):
        raise ValueError("a time must be RFC 3339 with an offset, e.g. 2026-11-25T05:10:00+08:00")
    return value


def storable_time(value: datetime) -> datetime:
    """A time the store and the rules can use: from 1970 up to (not including) 2100, UTC."""
    if not TIME_MIN <= value < TIME_MAX:
        raise ValueError("a time must lie between 1970-01-01T00:00:00Z and 2100-01-01T00:00:00Z")
    return value


Time = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339_only), AfterValidator(storable_time)]
_SAFE = AfterValidator(storable_text)

Kg = Annotated[float, Field(gt=0, lt=MAX_KG, allow_inf_nan=False), AfterValidator(_three_decimals)]
Price = Annotated[float, Field(ge=0, lt=100_000, allow_inf_nan=False), AfterValidator(_three_decimals)]
Head = Annotated[int, Field(ge=0, le=MAX_HEAD)]
PositiveHead = Annotated[int, Field(ge=1, le=MAX_HEAD)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200), _SAFE]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2000), _SAFE]
StallLabel = Annotated[str, StringConstraints(min_length=1, max_length=32), _SAFE]
ProductCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z._-]{1,32}$")]
Plate = Annotated[str, StringConstraints(min_length=2, max_length=16), _SAFE]


# -- cold chain (issue 14) ---------------------------------------------------------------------------


def _not_china(code: str) -> str:
    # An import comes from abroad: a domestic lot is never entered through customs as an import.
    if code == "CN":
        raise ValueError("origin_country of an imported lot cannot be CN")
    return code


def _two_decimals(value: float) -> float:
    if round(value, 2) != value:
        raise ValueError("at most 2 decimals")
    return value


def some_certificate(model: ImportDocumentsSupplied) -> ImportDocumentsSupplied:
    """import.documents_supplied supplies something: one certificate at least."""
    if model.inspection_cert_number is None and model.disinfection_cert_number is None:
        raise ValueError("give inspection_cert_number, disinfection_cert_number or both")
    return model


# ISO 3166-1 alpha-2, upper case (the letters only: the list of assigned codes is not kept here).
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_not_china)]
Port = Annotated[str, StringConstraints(min_length=1, max_length=64), _SAFE]
Celsius = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), AfterValidator(_two_decimals)]


LOT_CODE_DESCRIPTION = (
    "Lot or trace code. A 20-digit code whose first 6 digits are the sequence of an operator this service "
    "issued codes to must be a valid issued code (GS1 mod-10 check digit last, checked by the service); other "
    "systems' codes are taken as they are."
)


class Strict(BaseModel):
    """Base of every contract model: unknown fields are an error, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- GS1 EPCIS 2.0: the checks of a captured event (docs/epcis.md) ----------------------------------------

EPCIS_URIS = URIs()


def _epcis_problems(problems: list[Problem]) -> str:
    shown = "; ".join(f"{p.pointer or '/'}: {p.message}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"not a valid EPCIS 2.0 event: {shown}{more}"


def _unstorable(node: Any, where: str) -> list[Problem]:
    """The strings (keys too) of an EPCIS event that Postgres cannot store (a NUL, a lone surrogate)."""
    if isinstance(node, str):
        try:
            storable_text(node)
        except ValueError as exc:
            return [Problem(where, str(exc))]
        return []
    found: list[Problem] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _unstorable(key, where) + _unstorable(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _unstorable(value, f"{where}/{i}")
    return found[:5]


def check_epcis_event(data: EpcisEventData) -> EpcisEventData:
    """The data of an ``epcis.event``: an event the standard's schema accepts, whose lots the city can name
    (with the contract's default lot pattern: an LGTIN's city code is formed the same way everywhere)."""
    problems = _unstorable(data.event, "") + _unstorable(data.context, "/@context")
    if not problems:
        problems = epcis_schema.validate_event(data.event, data.context)
    if not problems:
        problems = epcis_effects(data).problems
    if problems:
        raise ValueError(_epcis_problems(problems))
    return data


def check_epcis_envelope(envelope: EpcisEventEvent) -> EpcisEventEvent:
    """An ``epcis.event``'s id is derived from the CBV event hash, so that the same EPCIS event is one event
    however it is sent; and its ``occurred_at`` is the event's ``eventTime``."""
    event = envelope.data.event
    digest = epcis_hash(envelope)
    wanted = epcis_hashing.envelope_id(digest, error_declaration="errorDeclaration" in event)
    if envelope.event_id != wanted:
        raise ValueError(f"the event_id of an epcis.event is derived from its event hash {digest}: {wanted}")
    try:
        event_time = datetime.fromisoformat(str(event.get("eventTime")))
    except ValueError:
        event_time = None
    if event_time != envelope.occurred_at:
        raise ValueError("the occurred_at of an epcis.event is its eventTime")
    return envelope


def epcis_hash(event: EpcisEventEvent) -> str:
    """The CBV event hash of a captured event (computed once per decoded event)."""
    data = event.data
    if data._hash is None:
        data._hash = epcis_hashing.event_hash(data.event, data.context)
    return data._hash


# -- code patterns: settings, read from the validation context -------------------------------------------
# The formats of operator, lot, farm... codes are settings (``TRACE_CODE_*``), the models are not: each code
# field runs a check that takes its pattern from the ``CodePatterns`` in the validation context
# (``context={"patterns": ...}``, what :class:`Catalogue` passes), or the contract defaults without one. The
# match is pydantic-core's own regex engine, and a mismatch is the same ``string_pattern_mismatch`` error a
# pattern constraint gives.

DEFAULT_PATTERNS = CodePatterns()


@lru_cache(maxsize=256)
def _matcher(pattern: str) -> SchemaValidator:
    return SchemaValidator(core_schema.str_schema(pattern=pattern))


def patterns_of(info: ValidationInfo) -> CodePatterns:
    """The code patterns a validation runs with: the context's, else the defaults."""
    context = info.context
    if isinstance(context, dict):
        given = context.get("patterns")
        if isinstance(given, CodePatterns):
            return given
    return DEFAULT_PATTERNS


class CodeCheck:
    """The after-validator of one kind of code (``CodePatterns`` field ``kind``)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, value: str, info: ValidationInfo) -> str:
        pattern: str = getattr(patterns_of(info), self.kind)
        if not _matcher(pattern).isinstance_python(value):
            raise PydanticCustomError(
                "string_pattern_mismatch", "String should match pattern '{pattern}'", {"pattern": pattern}
            )
        return value

    def __repr__(self) -> str:
        return f"CodeCheck({self.kind!r})"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # The contract's default pattern, unless the generator rendered a deployment's (contract/schemas.py).
        rendered = handler.resolve_ref_schema(handler(schema))
        rendered.setdefault("pattern", getattr(DEFAULT_PATTERNS, self.kind))
        return rendered


CODE_CHECKS: dict[str, CodeCheck] = {
    kind: CodeCheck(kind) for kind in ("operator", "lot", "farm", "ear_tag", "region", "voucher", "certificate")
}

OperatorCode = Annotated[str, CODE_CHECKS["operator"]]
# No check digit here: whether a 20-digit code is one the service issued depends on the issuers in the
# database (contract section 1), so intake and worker check it after validation (lot_codes below).
LotCode = Annotated[str, CODE_CHECKS["lot"], Field(description=LOT_CODE_DESCRIPTION)]
FarmCode = Annotated[str, CODE_CHECKS["farm"], AfterValidator(check_farm_code)]
EarTag = Annotated[str, CODE_CHECKS["ear_tag"], AfterValidator(check_ear_tag)]
Region = Annotated[str, CODE_CHECKS["region"], AfterValidator(check_region)]
Voucher = Annotated[str, CODE_CHECKS["voucher"]]
Cert = Annotated[str, CODE_CHECKS["certificate"]]
EarTags = Annotated[list[EarTag], Field(max_length=MAX_LIST)]


# -- the data of each event type (contract section 3) ------------------------------------------------------


class QuarantineCert(Strict):
    number: Cert
    kind: Literal["A", "B", "product"]
    issued_at: Time
    head_count: PositiveHead


class FarmPigsDispatched(Strict):
    lot: LotCode
    farm_code: FarmCode
    quarantine_cert: QuarantineCert
    head_count: PositiveHead
    ear_tags: EarTags
    destination: OperatorCode
    vehicle_plate: Plate | None = None
    origin_region: Region


class Owner(Strict):
    code: Annotated[str, StringConstraints(min_length=1, max_length=40), _SAFE] | None = None
    name: Text


class SlaughterPigsReceived(Strict):
    lot: LotCode
    quarantine_cert_number: Cert
    owner: Owner
    farm_code: FarmCode | None = None
    origin_region: Region
    head_count: PositiveHead
    dead_on_arrival: Head
    ear_tags: EarTags
    live_weight_kg: Kg
    vehicle_plate: Plate | None = None
    from_lot: LotCode | None = None


class SlaughterAsfTested(Strict):
    lot: LotCode
    method: Literal["pcr", "strip"]
    result: Literal["negative", "positive"]
    sampled_at: Time


class Output(Strict):
    lot: LotCode
    product_code: ProductCode
    product_name: Text
    weight_kg: Kg


class SlaughterBatchSlaughtered(Strict):
    lot: LotCode
    head_count: PositiveHead
    condemned_head: Head
    quality_cert_number: Cert | None = None
    product_quarantine_cert_number: Cert
    outputs: Annotated[list[Output], Field(min_length=1, max_length=MAX_LIST)]


class ProduceHarvested(Strict):
    lot: LotCode
    base_code: OperatorCode
    product_code: ProductCode
    product_name: Text
    weight_kg: Kg
    compliance_cert_number: Cert
    origin_region: Region
    harvested_at: Time


class ShippedLine(Strict):
    lot: LotCode
    weight_kg: Kg
    unit_price: Price | None = None


class TradeShipped(Strict):
    voucher_number: Voucher
    buyer: OperatorCode
    lines: Annotated[list[ShippedLine], Field(min_length=1, max_length=MAX_LIST)]
    destination: Text | None = None


class ReceivedLine(Strict):
    lot: LotCode
    from_lot: LotCode
    weight_kg: Kg
    product_code: ProductCode | None = None


class Documents(Strict):
    quarantine_cert_number: Cert | None = None
    quality_cert_number: Cert | None = None
    asf_report: Cert | None = None
    compliance_cert_number: Cert | None = None
    origin_proof_number: Cert | None = None


class TradeReceived(Strict):
    voucher_number: Voucher
    seller: OperatorCode
    lines: Annotated[list[ReceivedLine], Field(min_length=1, max_length=MAX_LIST)]
    documents: Documents


class LotTested(Strict):
    lot: LotCode
    test: Literal["pesticide_rapid", "ractopamine", "asf", "other"]
    method: Text
    value: Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)] | None = None
    result: Literal["pass", "fail"]


class RetailSold(Strict):
    sale_code: LotCode
    lot: LotCode
    stall: StallLabel | None = None  # the stall as the market labels it (A区12号, A-12), not a code
    weight_kg: Kg
    unit_price: Price


class LotDisposed(Strict):
    lot: LotCode
    weight_kg: Kg | None = None
    head: PositiveHead | None = None
    reason: LongText
    notice_number: Cert | None = None


class RegulatorLotAction(Strict):
    lot: LotCode
    reason: LongText
    scope: Literal["lot", "downstream"]


# -- cold chain: imported meat, cold stores, temperatures (issue 14) --


class ImportCustomsCleared(Strict):
    lot: LotCode
    product_code: ProductCode
    product_name: Text
    weight_kg: Kg
    storage: Literal["frozen", "chilled"]
    customs_declaration_number: Cert  # 报关单号
    inspection_cert_number: Cert | None = None  # 入境货物检验检疫证明
    disinfection_cert_number: Cert | None = None  # 消毒证明
    origin_country: Country
    entry_port: Port


class ImportDocumentsSupplied(Strict):
    lot: LotCode
    inspection_cert_number: Cert | None = None
    disinfection_cert_number: Cert | None = None

    _one_at_least = model_validator(mode="after")(some_certificate)


class ColdStoreMove(Strict):
    lot: LotCode
    store: OperatorCode
    weight_kg: Kg | None = None


class Reading(Strict):
    at: Time
    celsius: Celsius


class LotTemperatureRecorded(Strict):
    lot: LotCode
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_LIST)]
    sensor: Text | None = None


# -- GS1 EPCIS 2.0 (issue 14): one captured EPCIS event, as sent, with its document's @context --


class EpcisEventData(Strict):
    event: Annotated[dict[str, Any], Field(description="The EPCIS 2.0 event as captured (docs/epcis.md).")]
    context: Any = None
    # What validation computed, kept for the consumers of the same object (ownership, projection, the EPCIS
    # index): the event's graph effects and its CBV hash are each computed once per decoded event.
    _effects: epcis_mapping.Effects | None = PrivateAttr(default=None)
    _hash: str | None = PrivateAttr(default=None)

    _standard_event = model_validator(mode="after")(check_epcis_event)


# -- the envelope (contract section 2): one class per event type ------------------------------------------
# Field order is the canonical order (canonical_bytes): event_id, occurred_at, operator, event_type, data.


class Envelope(Strict):
    """What every event carries; each event type narrows ``event_type`` and ``data``."""

    event_id: UUID
    occurred_at: Time
    operator: OperatorCode
    event_type: str
    data: Strict


class FarmPigsDispatchedEvent(Envelope):
    event_type: Literal["farm.pigs_dispatched"]
    data: FarmPigsDispatched


class SlaughterPigsReceivedEvent(Envelope):
    event_type: Literal["slaughter.pigs_received"]
    data: SlaughterPigsReceived


class SlaughterAsfTestedEvent(Envelope):
    event_type: Literal["slaughter.asf_tested"]
    data: SlaughterAsfTested


class SlaughterBatchSlaughteredEvent(Envelope):
    event_type: Literal["slaughter.batch_slaughtered"]
    data: SlaughterBatchSlaughtered


class ProduceHarvestedEvent(Envelope):
    event_type: Literal["produce.harvested"]
    data: ProduceHarvested


class TradeShippedEvent(Envelope):
    event_type: Literal["trade.shipped"]
    data: TradeShipped


class TradeReceivedEvent(Envelope):
    event_type: Literal["trade.received"]
    data: TradeReceived


class LotTestedEvent(Envelope):
    event_type: Literal["lot.tested"]
    data: LotTested


class RetailSoldEvent(Envelope):
    event_type: Literal["retail.sold"]
    data: RetailSold


class LotDisposedEvent(Envelope):
    event_type: Literal["lot.disposed"]
    data: LotDisposed


class RegulatorLotHeldEvent(Envelope):
    event_type: Literal["regulator.lot_held"]
    data: RegulatorLotAction


class RegulatorLotReleasedEvent(Envelope):
    event_type: Literal["regulator.lot_released"]
    data: RegulatorLotAction


class ImportCustomsClearedEvent(Envelope):
    event_type: Literal["import.customs_cleared"]
    data: ImportCustomsCleared


class ImportDocumentsSuppliedEvent(Envelope):
    event_type: Literal["import.documents_supplied"]
    data: ImportDocumentsSupplied


class ColdstoreStoredInEvent(Envelope):
    event_type: Literal["coldstore.stored_in"]
    data: ColdStoreMove


class ColdstoreReleasedEvent(Envelope):
    event_type: Literal["coldstore.released"]
    data: ColdStoreMove


class LotTemperatureRecordedEvent(Envelope):
    event_type: Literal["lot.temperature_recorded"]
    data: LotTemperatureRecorded


class EpcisEventEvent(Envelope):
    event_type: Literal["epcis.event"]
    data: EpcisEventData

    _derived_from_the_hash = model_validator(mode="after")(check_epcis_envelope)


Event = (
    FarmPigsDispatchedEvent
    | SlaughterPigsReceivedEvent
    | SlaughterAsfTestedEvent
    | SlaughterBatchSlaughteredEvent
    | ProduceHarvestedEvent
    | TradeShippedEvent
    | TradeReceivedEvent
    | LotTestedEvent
    | RetailSoldEvent
    | LotDisposedEvent
    | RegulatorLotHeldEvent
    | RegulatorLotReleasedEvent
    | ImportCustomsClearedEvent
    | ImportDocumentsSuppliedEvent
    | ColdstoreStoredInEvent
    | ColdstoreReleasedEvent
    | LotTemperatureRecordedEvent
    | EpcisEventEvent
)
"""Any event of the contract; ``match`` on the classes (or ``isinstance``) narrows ``data``."""

_BY_TYPE: dict[EventType, type[Envelope]] = {
    EventType.FARM_PIGS_DISPATCHED: FarmPigsDispatchedEvent,
    EventType.SLAUGHTER_PIGS_RECEIVED: SlaughterPigsReceivedEvent,
    EventType.SLAUGHTER_ASF_TESTED: SlaughterAsfTestedEvent,
    EventType.SLAUGHTER_BATCH_SLAUGHTERED: SlaughterBatchSlaughteredEvent,
    EventType.PRODUCE_HARVESTED: ProduceHarvestedEvent,
    EventType.TRADE_SHIPPED: TradeShippedEvent,
    EventType.TRADE_RECEIVED: TradeReceivedEvent,
    EventType.LOT_TESTED: LotTestedEvent,
    EventType.RETAIL_SOLD: RetailSoldEvent,
    EventType.LOT_DISPOSED: LotDisposedEvent,
    EventType.REGULATOR_LOT_HELD: RegulatorLotHeldEvent,
    EventType.REGULATOR_LOT_RELEASED: RegulatorLotReleasedEvent,
    EventType.IMPORT_CUSTOMS_CLEARED: ImportCustomsClearedEvent,
    EventType.IMPORT_DOCUMENTS_SUPPLIED: ImportDocumentsSuppliedEvent,
    EventType.COLDSTORE_STORED_IN: ColdstoreStoredInEvent,
    EventType.COLDSTORE_RELEASED: ColdstoreReleasedEvent,
    EventType.LOT_TEMPERATURE_RECORDED: LotTemperatureRecordedEvent,
    EventType.EPCIS_EVENT: EpcisEventEvent,
}
# The envelope model and the data model of each event type, keyed by the event_type of the JSON.
MODELS: dict[str, type[Envelope]] = {t.value: model for t, model in _BY_TYPE.items()}


def _data_model(model: type[Envelope]) -> type[BaseModel]:
    data = model.model_fields["data"].annotation
    assert isinstance(data, type)
    assert issubclass(data, BaseModel)
    return data


DATA_MODELS: dict[str, type[BaseModel]] = {t: _data_model(model) for t, model in MODELS.items()}

# A union discriminated on event_type: an unknown type is one clear error, not eighteen.
EventUnion = Annotated[Event, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(EventUnion)


@lru_cache(maxsize=8)
def events_adapter(max_events: int) -> TypeAdapter[list[Event]]:
    """The validator of a batch of 1 to ``max_events`` events (a setting)."""
    return TypeAdapter(Annotated[list[EventUnion], Field(min_length=1, max_length=max_events)])


class Validator(Generic[V]):
    """A module-level TypeAdapter, validating with one configuration of code patterns."""

    __slots__ = ("_adapter", "_context")

    def __init__(self, adapter: TypeAdapter[V], patterns: CodePatterns) -> None:
        self._adapter = adapter
        self._context = {"patterns": patterns}

    @property
    def adapter(self) -> TypeAdapter[V]:
        return self._adapter

    def validate_json(self, data: str | bytes | bytearray, /, **kwargs: Any) -> V:
        return self._adapter.validate_json(data, context=self._context, **kwargs)

    def validate_python(self, value: Any, /, **kwargs: Any) -> V:
        return self._adapter.validate_python(value, context=self._context, **kwargs)

    def json_schema(self, **kwargs: Any) -> dict[str, Any]:
        return self._adapter.json_schema(**kwargs)


@dataclass(frozen=True)
class Catalogue:
    """The validators of one configuration of code patterns: the module-level models and adapters, with the
    patterns passed as validation context. Nothing here makes a type."""

    patterns: CodePatterns
    event: Validator[Event]
    events: Validator[list[Event]]
    models: dict[str, type[Envelope]]
    data_models: dict[str, type[BaseModel]]

    def validate_model(self, model: type[M], data: str | bytes | bytearray) -> M:
        """Validate one contract model's JSON with this catalogue's patterns."""
        return model.model_validate_json(data, context={"patterns": self.patterns})


def build_catalogue(patterns: CodePatterns | None = None, max_events: int = 1000) -> Catalogue:
    """The envelope validators for these code patterns (the defaults without)."""
    p = patterns or DEFAULT_PATTERNS
    return Catalogue(
        patterns=p,
        event=Validator(EVENT_ADAPTER, p),
        events=Validator(events_adapter(max_events), p),
        models=MODELS,
        data_models=DATA_MODELS,
    )


# -- the lot codes an event names ---------------------------------------------------------------------

# Every field of each event type's data that holds a lot code, as dotted paths (``*`` for each item of a
# list). tests/test_consumer_page.py checks it against the models, so a new lot field cannot be missed.
LOT_FIELDS: dict[str, tuple[str, ...]] = {
    EventType.FARM_PIGS_DISPATCHED: ("lot",),
    EventType.SLAUGHTER_PIGS_RECEIVED: ("lot", "from_lot"),
    EventType.SLAUGHTER_ASF_TESTED: ("lot",),
    EventType.SLAUGHTER_BATCH_SLAUGHTERED: ("lot", "outputs.*.lot"),
    EventType.PRODUCE_HARVESTED: ("lot",),
    EventType.TRADE_SHIPPED: ("lines.*.lot",),
    EventType.TRADE_RECEIVED: ("lines.*.lot", "lines.*.from_lot"),
    EventType.LOT_TESTED: ("lot",),
    EventType.RETAIL_SOLD: ("sale_code", "lot"),
    EventType.LOT_DISPOSED: ("lot",),
    EventType.REGULATOR_LOT_HELD: ("lot",),
    EventType.REGULATOR_LOT_RELEASED: ("lot",),
    # -- cold chain (issue 14) --
    EventType.IMPORT_CUSTOMS_CLEARED: ("lot",),
    EventType.IMPORT_DOCUMENTS_SUPPLIED: ("lot",),
    EventType.COLDSTORE_STORED_IN: ("lot",),
    EventType.COLDSTORE_RELEASED: ("lot",),
    EventType.LOT_TEMPERATURE_RECORDED: ("lot",),
    EventType.EPCIS_EVENT: (),  # the lots are inside the EPCIS event: see epcis_lot_codes
}


def lot_codes(event: Envelope) -> list[tuple[str, str]]:
    """(field, code) for every lot code a validated event names, the field as the client wrote it
    (``data.lines.0.from_lot``)."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, parts: list[str], where: str) -> None:
        if node is None:
            return
        if not parts:
            found.append((where, node))
        elif parts[0] == "*":
            for i, item in enumerate(node):
                walk(item, parts[1:], f"{where}.{i}")
        else:
            walk(getattr(node, parts[0]), parts[1:], f"{where}.{parts[0]}")

    for path in LOT_FIELDS[event.event_type]:
        walk(event.data, path.split("."), "data")
    if isinstance(event, EpcisEventEvent):
        found += [("data.event", code) for code in epcis_effects(event.data).lots_named]
    return found


def epcis_event_effects(event: dict[str, Any]) -> epcis_mapping.Effects:
    """What an EPCIS event does to the graph, with the city's URIs and the contract's default lot pattern (an
    LGTIN's city code is formed the same way everywhere): what capture checks and validation checks."""
    return epcis_mapping.effects(event, EPCIS_URIS, DEFAULT_PATTERNS.lot)


def epcis_effects(data: EpcisEventData) -> epcis_mapping.Effects:
    """What a captured EPCIS event does to the graph (computed once per decoded event)."""
    if data._effects is None:
        data._effects = epcis_event_effects(data.event)
    return data._effects


# -- checks that intake and worker share ---------------------------------------------------------------


def in_future(event: Envelope, *, now: datetime, skew_seconds: int) -> bool:
    """Whether an event's occurred_at lies more than the allowed skew ahead of the server clock (contract
    section 2); the API answers 422, the worker makes it a dead letter ``invalid_event``."""
    return event.occurred_at > now + timedelta(seconds=skew_seconds)


@dataclass(frozen=True)
class IssuedCodeSuspect:
    """A lot code under the 20-digit issued-code format that fails its check: a dead letter or a 422 when its
    first 6 digits are the sequence of an issuer of this service (only the database knows)."""

    index: int  # the event's position in its batch
    field: str
    code: str
    problem: str
    issuer_seq: int


def issued_code_suspects(events: Sequence[Envelope]) -> list[IssuedCodeSuspect]:
    """The pure part of the issued-code check (contract section 1), shared by intake and worker."""
    suspects: list[IssuedCodeSuspect] = []
    for i, event in enumerate(events):
        for field, code in lot_codes(event):
            problem = issued_code_problem(code)
            seq = issuer_prefix(code)
            if problem is not None and seq is not None:
                suspects.append(IssuedCodeSuspect(i, field, code, problem, seq))
    return suspects


def in_future_detail(skew_seconds: int) -> dict[str, Any]:
    """The ``details`` item of an event that :func:`in_future` refuses."""
    return {
        "field": "occurred_at",
        "type": "in_future",
        "message": f"occurred_at lies more than {skew_seconds} s in the future",
    }


# -- canonical form ----------------------------------------------------------------------------------


def canonical_bytes(event: BaseModel) -> bytes:
    """The canonical form of an event: the contract model's own JSON serialization.

    Fields come out in schema order with no whitespace, absent optional fields as ``null``, numbers and
    times normalised by their types. Re-sending the same event with other spacing, key order or number
    spelling yields the same bytes; the SHA-256 of these bytes is the content fingerprint.
    """
    return event.model_dump_json().encode()


def fingerprint(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()


# -- errors ------------------------------------------------------------------------------------------

# Why a message on the events topic became a dead letter (its ``error-code`` header; docs/api.md).
DEAD_LETTER_CODES = (
    "malformed_json",  # the value is not JSON
    "invalid_event",  # JSON that does not match the contract
    "conflicting_duplicate",  # an event_id known with other content
    "unauthenticated",  # unsigned, badly signed, or from an unknown or revoked integrator (section 8)
    "forbidden",  # a sender reporting for an operator outside its scope, or a suspended one (section 8)
    "not_holder",  # about a lot held by an operator the sender does not report for (section 7)
    "lot_taken",  # creates a code another operator holds (section 7)
    "lot_unknown",  # waited too long for a lot that was never created (section 7)
    "unapplicable",  # the database refused it even on its own
)


def describe_errors(exc: ValidationError, *, batch: bool) -> list[dict[str, Any]]:
    """Turn pydantic errors into the contract's ``details``: index (for a batch), field and message.

    The discriminator tag pydantic puts in the location (``farm.pigs_dispatched``) is dropped so the
    field path reads like the JSON the client sent.
    """
    details: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(err["loc"])
        item: dict[str, Any] = {}
        if batch and loc and isinstance(loc[0], int):
            item["index"] = loc.pop(0)
        if loc and isinstance(loc[0], str) and loc[0] in EventType._value2member_map_:
            loc.pop(0)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            item["field"] = "event_type"
            item["type"] = "unknown_event_type" if err["type"] == "union_tag_invalid" else "missing"
            item["message"] = "event_type must be one of: " + ", ".join(e.value for e in EventType)
        else:
            item["field"] = ".".join(str(part) for part in loc) if loc else None
            item["type"] = err["type"]
            item["message"] = err["msg"]
        details.append(item)
    return details


def unstorable_strings(body: bytes, *, batch: bool, limit: int = 50) -> list[dict[str, Any]]:
    """The strings of a body that hold a lone surrogate, as the contract's ``details``.

    JSON allows the escape ``"\\ud800"``; pydantic-core's parser refuses it as invalid JSON. When it has, this
    reads the body with Python's parser, which accepts it, so that the answer is a 422 naming the field (as
    for a NUL) rather than a 400 for JSON that is in fact well formed. Empty when the body is not JSON.
    """
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return []
    found: list[dict[str, Any]] = []

    def walk(node: Any, loc: list[str | int]) -> None:
        if len(found) >= limit:
            return
        if isinstance(node, str):
            try:
                storable_text(node)
            except ValueError as exc:
                item: dict[str, Any] = {}
                path = list(loc)
                if batch and path and isinstance(path[0], int):
                    item["index"] = path.pop(0)
                item |= {"field": ".".join(str(p) for p in path) or None, "type": "string_not_storable"}
                item["message"] = str(exc)
                found.append(item)
        elif isinstance(node, dict):
            for key, child in node.items():
                walk(key, [*loc, key] if storable_key(key) else loc)
                walk(child, [*loc, key])
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, [*loc, i])

    walk(value, [])
    return found


def storable_key(key: str) -> bool:
    try:
        storable_text(key)
    except ValueError:
        return False
    return True
