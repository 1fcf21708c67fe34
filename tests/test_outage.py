"""With the broker down the API answers 503 and accepts nothing; once it is back, posting works."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.conftest import ADMIN_TOKEN, api_client, make_settings
from tests.support import Actors, harvested_event
from trace_service.runtime.embedded import EmbeddedBroker


@pytest.mark.slow
async def test_broker_down_gives_503_and_nothing_half_accepted(
    database_url: str, db: asyncpg.Connection, tmp_path
) -> None:
    broker = EmbeddedBroker.start(log_file=tmp_path / "outage-broker.log")
    port = broker.port
    try:
        settings = make_settings(database_url, broker.bootstrap, produce_timeout_seconds=2.0)
        async with api_client(settings) as client:
            actors = Actors(client, ADMIN_TOKEN)
            op, key = await actors.operator_with_key()
            assert (await client.post("/v1/events", json=harvested_event(op), headers=key)).status_code == 202
            assert (await client.get("/readyz")).status_code == 200

            broker.kill()
            batch = [harvested_event(op) for _ in range(20)]
            r = await client.post("/v1/events", json=batch, headers=key)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "unavailable"
            assert int(r.headers["retry-after"]) > 0
            ids = [uuid.UUID(e["event_id"]) for e in batch]
            assert await db.fetchval("SELECT count(*) FROM intake WHERE event_id = ANY($1::uuid[])", ids) == 0
            r = await client.get(f"/v1/events/{batch[0]['event_id']}", headers=key)
            assert r.status_code == 404  # never accepted
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["error"]["details"][0]["broker"] == "down"

            broker = EmbeddedBroker.start(port=port, log_file=tmp_path / "outage-broker-2.log")
            r = await client.post("/v1/events", json=batch, headers=key)
            assert r.status_code == 202, r.text
            assert await db.fetchval("SELECT count(*) FROM intake WHERE event_id = ANY($1::uuid[])", ids) == 20
            assert (await client.get("/readyz")).status_code == 200
    finally:
        broker.stop()


async def test_database_down_gives_503_not_500(broker_bootstrap: str) -> None:
    from trace_service.runtime.embedded import find_free_port

    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{find_free_port()}/nothing"
    settings = make_settings(dead, broker_bootstrap)
    async with api_client(settings) as client:
        for method, path in (("POST", "/v1/events"), ("GET", f"/v1/events/{uuid.uuid4()}"), ("GET", "/v1/operators/X")):
            r = await client.request(method, path, headers={"Authorization": "Bearer trk.abcdefghijkm." + "x" * 43})
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["code"] == "unavailable"
            assert "retry-after" in r.headers
        assert (await client.get("/readyz")).status_code == 503
