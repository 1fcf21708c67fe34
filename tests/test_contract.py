"""The contract models alone: no I/O."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from tests.support import harvested_event, lot_tested_event
from trace_service.access import keys
from trace_service.contract.codes import CodePatterns, is_real_region
from trace_service.contract.events import EventType, build_catalogue, canonical_bytes, describe_errors, fingerprint

CATALOGUE = build_catalogue()


def test_canonical_form_ignores_spelling() -> None:
    event = lot_tested_event("OPCODE0001")
    a = CATALOGUE.event.validate_json(orjson.dumps(event))
    spaced = orjson.dumps(dict(reversed(list(event.items()))), option=orjson.OPT_INDENT_2)
    b = CATALOGUE.event.validate_json(spaced)
    assert canonical_bytes(a) == canonical_bytes(b)
    assert fingerprint(canonical_bytes(a)) == fingerprint(canonical_bytes(b))
    changed = CATALOGUE.event.validate_json(orjson.dumps({**event, "data": {**event["data"], "value": 13}}))
    assert fingerprint(canonical_bytes(changed)) != fingerprint(canonical_bytes(a))


def test_every_event_type_has_a_model() -> None:
    assert set(CATALOGUE.models) == {t.value for t in EventType}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["data"].update(weight_kg=0), "data.weight_kg"),
        (lambda e: e["data"].update(weight_kg=100_000), "data.weight_kg"),
        (lambda e: e["data"].update(weight_kg=1.2345), "data.weight_kg"),
        (lambda e: e["data"].update(origin_region="992000"), "data.origin_region"),
        (lambda e: e["data"].update(harvested_at="2026-11-25 04:30"), "data.harvested_at"),
        (lambda e: e["data"].update(product_name=""), "data.product_name"),
    ],
)
def test_field_errors_name_the_field(mutate, field: str) -> None:
    event = harvested_event("OPCODE0001")
    mutate(event)
    with pytest.raises(ValidationError) as info:
        CATALOGUE.event.validate_json(orjson.dumps(event))
    assert [d["field"] for d in describe_errors(info.value, batch=False)] == [field]


def test_patterns_come_from_settings() -> None:
    strict = build_catalogue(CodePatterns(lot=r"^[0-9]{20}$"))
    event = lot_tested_event("OPCODE0001", lot="ABCDEFGH12")
    CATALOGUE.event.validate_json(orjson.dumps(event))
    with pytest.raises(ValidationError):
        strict.event.validate_json(orjson.dumps(event))


def test_regions() -> None:
    assert is_real_region("442000")
    assert is_real_region("810000")
    assert not is_real_region("160000")
    assert not is_real_region("44200")


def test_keys_roundtrip() -> None:
    new = keys.generate()
    assert keys.parse(new.token) == (new.key_id, new.secret)
    digest = keys.hash_secret(new.secret, "pepper")
    assert keys.matches(new.secret, digest, "pepper")
    assert not keys.matches(new.secret, digest, "other pepper")
    assert keys.parse("trk.only-two") is None
    assert keys.parse(f"xyz.{new.key_id}.{new.secret}") is None
    assert new.token != keys.generate().token
