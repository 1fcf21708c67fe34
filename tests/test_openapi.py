"""The OpenAPI document: every operation typed, exemplified and honest about its errors.

The first tests read the document of an app whose settings point nowhere (building it connects to
nothing) and judge every operation the app has, whoever added it:

* a request body has an example; every answer with a body has an example and a typed schema;
* the error answers it can give are documented with the contract's error body (``ErrorBody``, never
  FastAPI's ``HTTPValidationError``): 422 when it takes parameters or a body, 400 and 413 when it takes
  a body, 401 and 403 when it needs a key, 404 when it has a path parameter, 503 when it reaches
  Postgres or the broker (found from the dependencies it declares);
* every example validates against the schema it illustrates;
* the document is valid OpenAPI 3.1 (``openapi-spec-validator``).

The last test runs the pig chain and an ASF-positive chain through the real API and worker and checks
that the real answers (lots, traces, recalls, the public view, alerts, statuses, dead letters, supply)
validate against the documented schemas, with every object closed (``additionalProperties: false``
where the document leaves it open), so a field the code adds and the models lack fails here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import make_settings
from tests.support import Actors, post_events, produce, register_operators, scenario_tag, wait_for
from trace_service.access.http import get_engine, get_read_engine
from trace_service.api.app import create_app
from trace_service.chain import scenarios
from trace_service.contract.events import EventType
from trace_service.settings import Settings

ERROR_BODY = "#/components/schemas/ErrorBody"
# The EPCIS REST binding (contract section 10): its errors are RFC 7807 problem details, a refused
# parameter or document is 400 (never 422).
PROBLEM = "#/components/schemas/Problem"
PROBLEM_MEDIA = "application/problem+json"
DOC = "urn:trace-service:openapi"
# Operations that reach Postgres or the broker without a dependency saying so.
REACHES_DEPENDENCIES_DIRECTLY = {("GET", "/readyz")}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(make_settings("postgresql+asyncpg://-/-", "-:9"))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _routes(app: FastAPI) -> Iterator[tuple[str, Any]]:
    """Every documented operation as (method, route); FastAPI's included routers are walked as its own
    document generator walks them (the route carries the prefixes and dependencies of its routers)."""
    for route in routing.iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            for method in sorted(route.methods or ()):
                yield method, route


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _reaches_database(method: str, route: Any) -> bool:
    if (method, route.path_format) in REACHES_DEPENDENCIES_DIRECTLY:
        return True
    return any(call in (get_engine, get_read_engine) for call in _calls(route.dependant))


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _has_example(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """An example on the schema, the schema it refers to, or on any branch it can take."""
    schema = _resolve(document, schema)
    if "examples" in schema or "example" in schema:
        return True
    branches = schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", [])
    return any(_has_example(document, b) for b in branches if b.get("type") != "null")


def _typed(schema: dict[str, Any]) -> bool:
    return any(key in schema for key in ("$ref", "type", "anyOf", "oneOf", "allOf"))


def _problems_of(document: dict[str, Any], method: str, route: Any, operation: dict[str, Any]) -> Iterator[str]:
    body = operation.get("requestBody")
    takes_input = bool(operation.get("parameters")) or body is not None
    for media, content in (body or {}).get("content", {}).items():
        if not ("example" in content or "examples" in content or _has_example(document, content.get("schema", {}))):
            yield f"request body ({media}) has no example"
    responses: dict[str, Any] = operation["responses"]
    binding = route.path_format == "/epcis" or route.path_format.startswith("/epcis/")
    error_media, error_schema = (PROBLEM_MEDIA, PROBLEM) if binding else ("application/json", ERROR_BODY)
    for status, answer in responses.items():
        for media, content in answer.get("content", {}).items():
            schema = content.get("schema", {})
            if status.startswith("2") and not _typed(schema):
                yield f"{status} ({media}) has no typed schema"
            if not ("example" in content or "examples" in content or _has_example(document, schema)):
                yield f"{status} ({media}) has no example"
            if status[0] in "45" and media == error_media and schema.get("$ref") != error_schema:
                yield f"{status} is documented with {schema}, not {error_schema.rsplit('/', 1)[1]}"
        if status[0] in "45" and set(answer.get("content", {})) != {error_media}:
            yield f"{status} documents its body as {sorted(answer.get('content', {}))}, not {error_media}"
    if not any(s.startswith("2") for s in responses):
        yield "no success answer is documented"
    needed: set[str] = set()
    if takes_input:
        needed.add("400" if binding else "422")
    if body is not None:
        needed |= {"400", "413"}
    if "security" in operation:
        needed |= {"401", "403"}
    if "{" in route.path_format:
        needed.add("404")
    if _reaches_database(method, route):
        needed.add("503")
    for status in sorted(needed - set(responses)):
        yield f"does not document {status}"


def test_every_operation_documents_examples_types_and_errors(app: FastAPI, document: dict[str, Any]) -> None:
    problems = []
    seen = 0
    for method, route in _routes(app):
        operation = document["paths"][route.path_format][method.lower()]
        seen += 1
        problems += [f"{method} {route.path_format}: {p}" for p in _problems_of(document, method, route, operation)]
    assert seen >= 27  # the operations of this service, and whatever is added
    assert problems == [], "\n".join(problems)


def test_the_error_body_is_the_contract_s_not_fastapi_s(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    info = _resolve(document, error["properties"]["error"])
    assert set(info["required"]) == {"code", "message", "details"}
    unavailable = document["paths"]["/v1/events"]["post"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]
    invalid = document["paths"]["/v1/lots/{code}"]["get"]["responses"]["422"]["content"]["application/json"]
    assert invalid["examples"]["invalid"]["value"]["error"]["code"] == "invalid"


def test_events_take_the_contract_s_envelope_with_one_example_per_event_type(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EventBody"}
    event_types = set(_resolve(document, {"$ref": "#/components/schemas/Event"})["discriminator"]["mapping"])
    assert event_types == {t.value for t in EventType}
    assert set(body["examples"]) == event_types | {"batch"}
    for name in event_types:
        assert body["examples"][name]["value"]["event_type"] == name


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example of a request, an answer or a component."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = [("request", operation.get("requestBody", {}))]
            answers += [(status, a) for status, a in operation["responses"].items()]
            for status, answer in answers:
                for media, content in answer.get("content", {}).items():
                    where = f"{method.upper()} {path} {status} {media}"
                    if "example" in content:
                        yield where, content.get("schema", {}), content["example"]
                    for name, example in content.get("examples", {}).items():
                        yield f"{where} {name}", content.get("schema", {}), example["value"]
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            yield f"components {name}", {"$ref": f"#/components/schemas/{name}"}, example


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    rebased = json.loads(json.dumps(schema).replace('"#/components/', f'"{DOC}#/components/'))
    return Draft202012Validator(rebased, registry=registry)


def test_every_example_is_valid_against_its_schema(document: dict[str, Any]) -> None:
    problems = []
    count = 0
    for where, schema, example in _examples(document):
        count += 1
        for error in _validator(document, schema).iter_errors(example):
            problems.append(f"{where}: {error.message[:200]} at {list(error.absolute_path)}")
    assert count > 100
    assert problems == [], "\n".join(problems)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate_openapi(document)  # raises on any violation of the OpenAPI 3.1 schema


# -- real answers against the documented schemas ------------------------------------------------------------


def _closed(node: Any) -> Any:
    """The schema with every object that names its properties closed to others."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


class Answers:
    """Checks real answers against the schema the document gives their operation and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = _closed(copy.deepcopy(document))
        self.checked: set[tuple[str, str, str]] = set()

    def check(self, response: httpx.Response, path: str) -> Any:
        method = response.request.method.lower()
        answer = self.document["paths"][path][method]["responses"].get(str(response.status_code))
        assert answer is not None, f"{method} {path} answered an undocumented {response.status_code}"
        media = response.headers["content-type"].split(";")[0]
        schema = answer["content"][media]["schema"]
        body = response.json()
        errors = [
            f"{e.message[:300]} at {list(e.absolute_path)}" for e in _validator(self.document, schema).iter_errors(body)
        ]
        assert errors == [], f"{method.upper()} {path} {response.status_code}:\n" + "\n".join(errors)
        self.checked.add((method.upper(), path, str(response.status_code)))
        return body


async def test_real_answers_validate_against_the_documented_schemas(
    client: httpx.AsyncClient, actors: Actors, worker: None, settings: Settings
) -> None:
    answers = Answers(create_app(settings).openapi())
    admin = actors.admin

    answers.check(await client.get("/healthz"), "/healthz")
    answers.check(await client.get("/readyz"), "/readyz")

    pig = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, admin, pig["operators"])
    waited = answers.check(await post_events(client, admin, pig["events"]), "/v1/events")
    asf = scenarios.instantiate(scenarios.load("faults/asf_positive"), scenario_tag())
    await register_operators(client, admin, asf["operators"])
    answers.check(await post_events(client, admin, asf["events"]), "/v1/events")
    accepted = await client.post("/v1/events", json=pig["events"][0], headers=admin)
    answers.check(accepted, "/v1/events")
    assert accepted.status_code == 202

    m = pig["mapping"]
    sale, farm_lot = m["SALE2026112500001"], pig["events"][0]["data"]["lot"]
    lots = sorted({e["data"]["lot"] for e in pig["events"] if "lot" in e["data"]} | {sale})
    for code in lots:
        answers.check(await client.get(f"/v1/lots/{code}", headers=admin), "/v1/lots/{code}")
    for code, direction in ((sale, "up"), (farm_lot, "down"), (lots[len(lots) // 2], "both")):
        r = await client.get(f"/v1/lots/{code}/trace", params={"direction": direction}, headers=admin)
        trace = answers.check(r, "/v1/lots/{code}/trace")
        assert trace["edges"], trace
    recall = answers.check(await client.get(f"/v1/lots/{farm_lot}/recall", headers=admin), "/v1/lots/{code}/recall")
    assert any(lot["kind"] == "sale" for lot in recall["lots"])
    public = await client.get(f"/v1/public/trace/{sale}")
    assert answers.check(public, "/v1/public/trace/{code}")["type"] == "sale"
    batch = asf["events"][2]["data"]["lot"]
    stopped = answers.check(await client.get(f"/v1/public/trace/{batch}"), "/v1/public/trace/{code}")
    assert stopped["warning"] is not None

    asf_event = asf["events"][2]["event_id"]

    async def raised() -> Any:
        body = (await client.get(f"/v1/events/{asf_event}", headers=admin)).json()
        return body if body.get("alerts") else None

    await wait_for(raised)
    status = answers.check(await client.get(f"/v1/events/{asf_event}", headers=admin), "/v1/events/{event_id}")
    alert_id = status["alerts"][0]["id"]
    page = answers.check(await client.get("/v1/alerts", params={"limit": 1}, headers=admin), "/v1/alerts")
    assert page["items"]
    answers.check(await client.get(f"/v1/alerts/{alert_id}", headers=admin), "/v1/alerts/{alert_id}")
    acknowledged = await client.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "seen"}, headers=admin)
    assert answers.check(acknowledged, "/v1/alerts/{alert_id}/acknowledge")["acknowledged"]["note"] == "seen"
    resolved = await client.post(f"/v1/alerts/{alert_id}/resolve", json={"note": "sealed"}, headers=admin)
    assert answers.check(resolved, "/v1/alerts/{alert_id}/resolve")["resolved"] is not None

    # A message nobody signed, straight to the topic: a dead letter.
    await produce(settings, [(b"442000999999", b"\xff not json", [])])

    async def dead() -> Any:
        body = (await client.get("/v1/dead-letters", headers=admin)).json()
        return body if body["items"] else None

    await wait_for(dead)
    answers.check(await client.get("/v1/dead-letters", headers=admin), "/v1/dead-letters")

    day = pig["events"][-1]["occurred_at"][:10]
    supply = await client.get("/v1/monitor/supply", params={"from": day, "to": day}, headers=admin)
    assert answers.check(supply, "/v1/monitor/supply")["series"]

    # Errors are the contract's body too.
    answers.check(await client.get("/v1/lots/NOSUCHLOT0001", headers=admin), "/v1/lots/{code}")
    answers.check(await client.get("/v1/lots/NOSUCHLOT0001"), "/v1/lots/{code}")
    answers.check(await client.get("/v1/lots/x", headers=admin), "/v1/lots/{code}")
    answers.check(await client.post("/v1/events", content=b"{", headers=admin), "/v1/events")
    assert waited["complete"] is True
    assert {s for _, _, s in answers.checked} >= {"200", "202", "400", "401", "404", "422"}

    # The check itself can fail: a field the models do not describe is refused.
    extra = httpx.Response(200, json={**public.json(), "phone": "13800000000"}, request=public.request)
    with pytest.raises(AssertionError, match="phone"):
        answers.check(extra, "/v1/public/trace/{code}")
