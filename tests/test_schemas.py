"""The integrator-facing files: committed JSON Schemas, one example per event type, the AsyncAPI document.

Pure: no database, no broker. The schemas must not drift from the contract models, must be valid
2020-12 schemas, must accept every example and the canonical form the API produces, and must reject
what the models reject, except for the few checks listed in their descriptions.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import ValidationError

from trace_service.cli import main as cli_main
from trace_service.contract.codes import CodePatterns
from trace_service.contract.events import DEAD_LETTER_CODES, EventType, build_catalogue, canonical_bytes
from trace_service.contract.schemas import ENVELOPE_FILE, render_schemas
from trace_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EVENTS = ROOT / "events"
EXAMPLES = EVENTS / "examples"
ASYNCAPI = EVENTS / "asyncapi.yaml"

CATALOGUE = build_catalogue()
EVENT_TYPES = sorted(e.value for e in EventType)


def committed_schemas() -> dict[str, bytes]:
    return {p.relative_to(SCHEMAS).as_posix(): p.read_bytes() for p in sorted(SCHEMAS.rglob("*.schema.json"))}


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return schema


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def example(event_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8"))
    return doc


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trace_service.cli", "schemas", "--check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- (a) drift ---------------------------------------------------------------------------------------


def test_committed_schemas_are_exactly_what_the_models_generate() -> None:
    generated = {name: text.encode() for name, text in render_schemas(CATALOGUE).items()}
    committed = committed_schemas()
    assert sorted(committed) == sorted(generated), "run `trace-service schemas` and commit the result"
    for name, text in generated.items():
        assert committed[name] == text, f"schemas/{name} drifted from the models: run `trace-service schemas`"


def test_there_is_one_schema_per_event_type_and_the_envelope() -> None:
    assert sorted(committed_schemas()) == sorted([ENVELOPE_FILE, *(f"events/{t}.schema.json" for t in EVENT_TYPES)])


def test_check_command_passes_on_the_committed_files() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("damage", ["differs", "missing", "extra"])
def test_check_command_fails_and_names_the_file_when_a_copy_has_drifted(tmp_path: Path, damage: str) -> None:
    out = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, out)
    target = out / "events" / "lot.tested.schema.json"
    if damage == "differs":
        doc = json.loads(target.read_text(encoding="utf-8"))
        doc["$defs"]["LotTested"]["properties"]["lot"]["pattern"] = "^[0-9A-Z]{6,32}$"
        target.write_text(json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    elif damage == "missing":
        target.unlink()
    else:
        target = out / "events" / "lot.renamed.schema.json"
        target.write_text("{}\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    result = run_check("--out", str(out))

    assert result.returncode == 1
    assert f"{damage}: " in result.stderr
    assert target.name in result.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "--check must write nothing"


def test_schemas_command_writes_the_committed_files_and_removes_stale_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "events").mkdir(parents=True)
    (out / "events" / "stale.schema.json").write_text("{}\n", encoding="utf-8")
    (out / "README.md").write_text("kept\n", encoding="utf-8")

    assert cli_main(["schemas", "--out", str(out)]) == 0

    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.schema.json")}
    assert written == committed_schemas()
    assert (out / "README.md").read_text(encoding="utf-8") == "kept\n"
    assert "removed" in capsys.readouterr().err
    assert cli_main(["schemas", "--out", str(out), "--check"]) == 0


def test_schemas_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["schemas", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--check" in out
    assert "--out" in out


# -- (b) the schemas are schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(committed_schemas()))
def test_each_committed_file_is_a_valid_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://trace.zs.example/schemas/v1/{name}"
    assert schema["title"]
    assert "not expressible" in schema["description"]


def test_schemas_carry_the_contract_constraints() -> None:
    schema = load_schema("events/farm.pigs_dispatched.schema.json")
    assert schema["additionalProperties"] is False
    data = schema["$defs"]["FarmPigsDispatched"]
    assert data["additionalProperties"] is False
    assert schema["$defs"]["QuarantineCert"]["additionalProperties"] is False
    assert data["properties"]["lot"]["pattern"] == CodePatterns().lot
    assert schema["properties"]["operator"]["pattern"] == CodePatterns().operator
    assert data["properties"]["ear_tags"]["items"]["pattern"] == CodePatterns().ear_tag
    assert "pattern" in schema["properties"]["occurred_at"]
    weight = load_schema("events/retail.sold.schema.json")["$defs"]["RetailSold"]["properties"]["weight_kg"]
    assert "3 decimal" in weight["description"]


# -- (c) the examples --------------------------------------------------------------------------------


def test_there_is_exactly_one_example_per_event_type() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == EVENT_TYPES


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_example_is_valid_against_its_schema_the_envelope_and_the_models(event_type: str) -> None:
    doc = example(event_type)
    assert doc["event_type"] == event_type

    validator(f"events/{event_type}.schema.json").validate(doc)
    validator(ENVELOPE_FILE).validate(doc)
    event = CATALOGUE.event.validate_json((EXAMPLES / f"{event_type}.json").read_bytes())
    assert type(event) is CATALOGUE.models[event_type]

    # What the API produces to Kafka (the canonical form, nulls included) is valid too.
    canonical = json.loads(canonical_bytes(event))
    validator(f"events/{event_type}.schema.json").validate(canonical)
    validator(ENVELOPE_FILE).validate(canonical)


def test_examples_tell_one_chain() -> None:
    shipped = example("trade.shipped")
    received = example("trade.received")
    slaughtered = example("slaughter.batch_slaughtered")
    pigs = example("slaughter.pigs_received")
    farm = example("farm.pigs_dispatched")
    assert pigs["data"]["from_lot"] == farm["data"]["lot"]
    assert pigs["data"]["quarantine_cert_number"] == farm["data"]["quarantine_cert"]["number"]
    assert pigs["data"]["ear_tags"] == farm["data"]["ear_tags"]
    assert farm["data"]["destination"] == pigs["operator"]
    assert slaughtered["data"]["lot"] == pigs["data"]["lot"] == example("slaughter.asf_tested")["data"]["lot"]
    outputs = {o["lot"] for o in slaughtered["data"]["outputs"]}
    assert {line["lot"] for line in shipped["data"]["lines"]} <= outputs
    assert received["data"]["voucher_number"] == shipped["data"]["voucher_number"]
    assert received["operator"] == shipped["data"]["buyer"]
    assert received["data"]["seller"] == shipped["operator"]
    assert {line["from_lot"] for line in received["data"]["lines"]} <= outputs
    carcass_kg = sum(o["weight_kg"] for o in slaughtered["data"]["outputs"])
    assert 0.68 <= carcass_kg / pigs["data"]["live_weight_kg"] <= 0.80  # no yield_out_of_range alert
    ids = [example(t)["event_id"] for t in EVENT_TYPES]
    assert len(set(ids)) == len(ids)


# -- (d) what the models reject, the schemas reject --------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


EVERY_TYPE: dict[str, Mutation] = {
    "unknown top-level field": _set("evnet_type", "typo"),
    "unknown data field": _set("data.notes", "typo"),
    "naive occurred_at": _set("occurred_at", "2026-11-25T05:10:00"),
    "lowercase operator code": _set("operator", "442000abc001"),
    "event_id not a uuid": _set("event_id", "not-a-uuid"),
}

FARM_DISPATCH: dict[str, Mutation] = {
    "naive nested time": _set("data.quarantine_cert.issued_at", "2026-11-25T00:40:00"),
    "unknown nested field": _set("data.quarantine_cert.valid_days", 1),
    "lot code too short": _set("data.lot", "LP12"),
    "lot code lowercase": _set("data.lot", "lp4453210012261125"),
    "farm code 9 digits": _set("data.farm_code", "445321001"),
    "farm code from no province": _set("data.farm_code", "9953210012"),
    "ear tag not a pig": _set("data.ear_tags.0", "244532100261101"),
    "ear tag from no province": _set("data.ear_tags.0", "199532100261101"),
    "region from no province": _set("data.origin_region", "995321"),
    "certificate kind unknown": _set("data.quarantine_cert.kind", "C"),
    "head count zero": _set("data.head_count", 0),
    "head count as text": _set("data.head_count", "6"),
}


def assert_rejected_everywhere(doc: dict[str, Any]) -> None:
    event_type = doc.get("event_type")
    if event_type in EVENT_TYPES:
        assert list(validator(f"events/{event_type}.schema.json").iter_errors(doc)), "event schema accepted it"
    assert list(validator(ENVELOPE_FILE).iter_errors(doc)), "envelope schema accepted it"
    with pytest.raises(ValidationError):
        CATALOGUE.event.validate_json(json.dumps(doc, ensure_ascii=False))


@pytest.mark.parametrize("mutation", sorted(EVERY_TYPE))
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_invalid_variants_of_every_example_fail_schema_and_models(event_type: str, mutation: str) -> None:
    doc = copy.deepcopy(example(event_type))
    EVERY_TYPE[mutation](doc)
    assert_rejected_everywhere(doc)


@pytest.mark.parametrize("mutation", sorted(FARM_DISPATCH))
def test_invalid_codes_fail_schema_and_models(mutation: str) -> None:
    doc = copy.deepcopy(example("farm.pigs_dispatched"))
    FARM_DISPATCH[mutation](doc)
    assert_rejected_everywhere(doc)


def test_unknown_event_type_fails_schema_and_models() -> None:
    doc = copy.deepcopy(example("lot.tested"))
    doc["event_type"] = "lot.tasted"
    assert_rejected_everywhere(doc)


def test_four_decimals_is_the_documented_gap_the_models_close() -> None:
    doc = copy.deepcopy(example("retail.sold"))
    doc["data"]["weight_kg"] = 0.8625
    assert not list(validator("events/retail.sold.schema.json").iter_errors(doc))  # see schemas/README.md
    with pytest.raises(ValidationError, match="at most 3 decimals"):
        CATALOGUE.event.validate_json(json.dumps(doc, ensure_ascii=False))


# -- (e) the AsyncAPI document -----------------------------------------------------------------------


def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return doc


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_asyncapi_names_the_three_topics_with_their_default_names() -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    defaults = Settings.model_fields
    assert addresses == {
        defaults["topic_events"].default,
        defaults["topic_dlq"].default,
        defaults["topic_alerts"].default,
    }
    assert addresses == {"trace.events.v1", "trace.events.v1.dlq", "trace.alerts.v1"}


def test_asyncapi_refs_resolve() -> None:
    doc = asyncapi()
    found = refs(doc)
    assert any(r.endswith("envelope.schema.json") for r in found)
    for ref in found:
        target, _, pointer = ref.partition("#")
        if target:
            assert (ASYNCAPI.parent / target).resolve().is_file(), f"{ref} points to no file"
            continue
        node: Any = doc
        for part in pointer.lstrip("/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict), ref
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_asyncapi_messages_match_the_contract() -> None:
    messages = asyncapi()["components"]["messages"]
    assert messages["TraceEvent"]["bindings"]["kafka"]["key"]["pattern"] == CodePatterns().operator
    assert messages["TraceEvent"]["headers"]["properties"]["trace-source"]["enum"] == ["api"]
    dead = messages["DeadLetter"]["headers"]
    assert set(dead["required"]) == {"error-code", "error-message", "source-topic", "source-partition", "source-offset"}
    assert set(dead["properties"]["error-code"]["enum"]) == set(DEAD_LETTER_CODES)
    signed = messages["TraceEvent"]["headers"]
    assert {"trace-key-id", "trace-signature", "trace-actor"} <= set(signed["properties"])
    assert set(signed["required"]) == {"trace-key-id", "trace-signature"}


def test_asyncapi_alert_schema_is_valid_and_accepts_its_example() -> None:
    alert = asyncapi()["components"]["schemas"]["Alert"]
    Draft7Validator.check_schema(alert)  # the AsyncAPI schema format is a superset of draft 7
    assert set(alert["required"]) == {
        "id",
        "rule",
        "severity",
        "level",
        "subject",
        "message",
        "evidence",
        "status",
        "created_at",
        "updated_at",
    }
    check = Draft7Validator(alert)
    for item in alert["examples"]:
        check.validate(item)
    wrong = {**alert["examples"][0], "severity": "fatal"}
    assert list(check.iter_errors(wrong))
