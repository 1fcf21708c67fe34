"""Schemathesis over every operation of the OpenAPI document: generated requests, valid and invalid,
never get a server error, and every answer has a status, a content type and a body the document gives
for that operation.

The app runs in process on the test database and broker, with the admin token (every role's reads and
writes) and, for the endpoints only an operator key may call, a real operator's key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from tests.conftest import ADMIN_TOKEN, api_client, make_settings
from tests.support import Actors
from trace_service.api.app import create_app

# What every answer must pass: the richer the document, the more these hold the code to it.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Operations whose callers must be operators (their staff answer is a 403 before anything is read).
OPERATOR_ONLY = {("POST", "/v1/codes")}


@pytest.fixture(scope="module")
async def operator_key(database_url: str, broker_bootstrap: str) -> str:
    async with api_client(make_settings(database_url, broker_bootstrap)) as client:
        _, key = await Actors(client, ADMIN_TOKEN).operator_with_key()
    return key["Authorization"]


@pytest.fixture(scope="module")
def app(database_url: str, broker_bootstrap: str) -> Iterator[FastAPI]:
    """The app the generated requests reach, on the test database and broker. Schemathesis serves it
    from an event loop of its own and runs its lifespan there."""
    # The document gives the real event schema, so generated events are often valid and accepted; with
    # no worker running, ?wait=true would wait its whole timeout for each of them.
    settings = make_settings(database_url, broker_bootstrap, produce_timeout_seconds=2.0, wait_timeout_seconds=0.2)
    yield create_app(settings)
    asgi.shutdown_lifespans()  # engines and producer, disposed in the loop that made them


# The operations come from the app's own OpenAPI document, read at collection time from an app whose
# settings point nowhere (building it connects to nothing); the requests go to the fixture's app.
# (``schemathesis.pytest.from_fixture`` would defer this, but it needs a pytest attribute that pytest 9
# no longer has.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(make_settings("postgresql+asyncpg://-/-", "-:9")))


def _streams(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (r.get("content") or {}) for r in responses.values())


@schema.parametrize()
@settings(
    max_examples=25,  # about 40 s for every operation; raise it locally to hunt
    deadline=None,  # a request includes real Postgres and broker round trips
    database=None,  # no example database left in the work tree
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case: Any, app: FastAPI, operator_key: str) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    authorization = operator_key if (method, path) in OPERATOR_ONLY else f"Bearer {ADMIN_TOKEN}"
    # An event stream never ends by itself: what it sent within a second is its answer. Other requests
    # get a generous bound, so that a hang fails one example instead of the whole run.
    timeout = 1 if _streams(case.operation) else 30
    case.call_and_validate(app=app, headers={"Authorization": authorization}, checks=CHECKS, timeout=timeout)
