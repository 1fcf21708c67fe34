"""Operators: which kinds may be registered under which, and demo codes that never name two operators."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Actors, code
from tests.test_readme import README, shell_blocks
from trace_service.access.models import OperatorKind
from trace_service.access.rules import ALLOWED_PARENTS
from trace_service.chain import scenarios
from trace_service.sim.city import SCALES, build_city

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "events" / "examples"
API_DOC = ROOT / "docs" / "api.md"
# Fields of an event that name an operator (the regulator's code in regulator.* events is no registration).
OPERATOR_FIELDS = ("operator", "buyer", "seller", "destination", "base_code")
REGULATOR = "442000900001"


async def test_a_kind_is_registered_only_under_the_kinds_its_row_allows(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    parents = {kind: await actors.operator(kind=kind.value) for kind in OperatorKind}
    for kind in OperatorKind:
        for parent_kind, parent in parents.items():
            body = {"code": code("PK", 12), "name": "测试", "kind": kind.value, "region": "442000", "parent": parent}
            r = await client.post("/v1/operators", json=body, headers=actors.admin)
            if parent_kind in ALLOWED_PARENTS[kind]:
                assert r.status_code == 201, (kind, parent_kind, r.text)
                continue
            assert r.status_code == 422, (kind, parent_kind, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid"
            assert error["details"][0]["field"] == "parent"
            message = error["details"][0]["message"]
            assert parent_kind.value in message
            for allowed in ALLOWED_PARENTS[kind]:
                assert allowed.value in message, message
            # Nothing was stored.
            got = await client.get(f"/v1/operators/{body['code']}", headers=actors.admin)
            assert got.status_code == 404
        # Every kind may stand alone.
        alone = {"code": code("PK", 12), "name": "测试", "kind": kind.value, "region": "442000"}
        assert (await client.post("/v1/operators", json=alone, headers=actors.admin)).status_code == 201


async def test_the_reported_stall_of_the_issue_is_refused(client: httpx.AsyncClient, actors: Actors) -> None:
    base = await actors.operator(kind="planting_base")
    body = {"code": code("ST", 12), "name": "105号摊", "kind": "retailer", "region": "442000", "parent": base}
    r = await client.post("/v1/operators", json=body, headers=actors.admin)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        f"{base} is a planting_base: a retailer may only be registered under a retail_market or supermarket, "
        "not under a planting_base"
    )


def test_every_kind_has_a_row_and_the_api_doc_shows_the_table() -> None:
    assert set(ALLOWED_PARENTS) == set(OperatorKind)
    doc = API_DOC.read_text(encoding="utf-8")
    for kind, allowed in ALLOWED_PARENTS.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{kind.value}` |")), None)
        assert row is not None, f"docs/api.md has no row for {kind.value} in the table of parent kinds"
        cells = row.split("|")[2]
        assert set(re.findall(r"`([a-z_]+)`", cells)) == {k.value for k in allowed}, row


# -- demo codes ------------------------------------------------------------------------------------------


def _registry() -> dict[str, dict[str, Any]]:
    entries = json.loads(scenarios.OPERATORS.read_text(encoding="utf-8"))["operators"]
    codes = [op["code"] for op in entries]
    assert len(codes) == len(set(codes)), "events/operators.json lists a code twice"
    return scenarios.demo_operators()


def _scenario_files() -> list[Path]:
    return sorted(scenarios.SCENARIOS.rglob("*.json"))


def _named_operators(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in OPERATOR_FIELDS and isinstance(value, str) and re.fullmatch(r"[0-9A-Z]{6,20}", value):
                found.add(value)
            else:
                found |= _named_operators(value)
    elif isinstance(node, list):
        for item in node:
            found |= _named_operators(item)
    return found


def readme_registrations() -> list[dict[str, Any]]:
    """The operator bodies the README posts (``-d '{...}'`` with a ``kind``)."""
    bodies = []
    for block in shell_blocks(README.read_text(encoding="utf-8")):
        for raw in re.findall(r"-d '(\{.*?\})'", block.text, flags=re.S):
            body = json.loads(raw)
            if "kind" in body:
                bodies.append(body)
    return bodies


def test_the_registry_is_valid_and_parents_follow_the_table() -> None:
    registry = _registry()
    for op in registry.values():
        assert set(op) <= {"code", "name", "kind", "region", "parent"}, op
        if "parent" in op:
            parent = registry[op["parent"]]
            assert OperatorKind(parent["kind"]) in ALLOWED_PARENTS[OperatorKind(op["kind"])], op
        serial = op["code"][7:]
        assert len(op["code"]) == 12, op
        assert int(serial) < 10_000, f"{op['code']}: demo serials are below 10000 (the simulator's start at 10001)"


def test_scenarios_and_examples_use_only_registered_demo_operators() -> None:
    registry = _registry()
    for path in _scenario_files():
        raw = json.loads(path.read_text(encoding="utf-8"))
        listed = raw.get("operators", [])
        assert all(isinstance(op, str) for op in listed), f"{path}: list operators by code (events/operators.json)"
        assert set(listed) <= set(registry), f"{path}: {set(listed) - set(registry)} not in events/operators.json"
        sc = scenarios.load(str(path.relative_to(scenarios.SCENARIOS).with_suffix("")))
        named = _named_operators(sc["events"]) - {REGULATOR}
        assert named <= {op["code"] for op in sc["operators"]}, (path, named)
    for path in sorted(EXAMPLES.glob("*.json")):
        named = _named_operators(json.loads(path.read_text(encoding="utf-8"))) - {REGULATOR}
        assert named <= set(registry), f"{path}: {named - set(registry)} not in events/operators.json"


def test_the_readme_registers_demo_operators_that_no_scenario_or_example_uses() -> None:
    registry = _registry()
    bodies = readme_registrations()
    assert bodies, "the README registers no operator"
    used = set()
    for path in _scenario_files():
        used |= {op["code"] for op in scenarios.load(str(path.relative_to(scenarios.SCENARIOS).with_suffix("")))[
            "operators"]}  # fmt: skip
    for path in EXAMPLES.glob("*.json"):
        used |= _named_operators(json.loads(path.read_text(encoding="utf-8")))
    for body in bodies:
        if body["code"] not in registry:  # a refused registration (a parent of the wrong kind) is no operator
            assert body.get("parent") in registry, body
            continue
        entry = registry[body["code"]]
        assert {k: body.get(k) for k in ("code", "name", "kind", "region", "parent")} == {
            k: entry.get(k) for k in ("code", "name", "kind", "region", "parent")
        }, f"the README registers {body['code']} with other details than events/operators.json"
        assert body["code"] not in used, f"the README's {body['code']} is also a scenario's or an example's"
        assert 9000 <= int(body["code"][7:]) <= 9999, body["code"]


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_the_simulated_city_shares_no_code_with_the_demo_operators(scale: str) -> None:
    registry = _registry()
    for seed in (1, 2, 7):
        city = {op.code for op in build_city(seed, scale).operators}
        assert not city & set(registry), (scale, seed, sorted(city & set(registry)))


def test_the_readmes_events_create_nothing_a_scenario_or_an_example_creates() -> None:
    ids, lots = set(), set()
    for path in _scenario_files():
        for event in scenarios.load(str(path.relative_to(scenarios.SCENARIOS).with_suffix("")))["events"]:
            ids.add(event["event_id"])
            scenarios._collect(event, lots, set())
    for path in EXAMPLES.glob("*.json"):
        event = json.loads(path.read_text(encoding="utf-8"))
        ids.add(event["event_id"])
        scenarios._collect(event, lots, set())
    posted = [
        json.loads(raw)
        for block in shell_blocks(README.read_text(encoding="utf-8"))
        for raw in re.findall(r"-d '(\{.*?\})'", block.text, flags=re.S)
    ]
    events = [body for body in posted if "event_id" in body]
    assert events, "the README posts no event"
    for event in events:
        assert event["event_id"] not in ids, event["event_id"]
        assert event["data"]["lot"] not in lots, event["data"]["lot"]


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_the_simulated_city_registers_tenants_under_the_kinds_the_table_allows(scale: str) -> None:
    city = build_city(1, scale)
    kinds = {op.code: OperatorKind(op.kind) for op in city.operators}
    for op in city.operators:
        if op.parent:
            assert kinds[op.parent] in ALLOWED_PARENTS[OperatorKind(op.kind)], op
