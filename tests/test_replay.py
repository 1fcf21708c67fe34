"""``trace-service replay`` against a real HTTP server: faults by rule, next to their chain, and operators that
are already registered with other details."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.conftest import ADMIN_TOKEN
from tests.support import scenario_tag
from trace_service.api.app import create_app
from trace_service.chain import scenarios
from trace_service.runtime import replay
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """The API served over HTTP on a free port (replay speaks HTTP), in a thread with its own loop."""
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the API did not start"
        assert time.monotonic() < deadline, "the API did not start in time"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_a_fault_is_found_by_its_rule_and_the_catalogue_tags_differ() -> None:
    assert replay.resolve("asf_positive") == scenarios.SCENARIOS / "faults" / "asf_positive.json"
    assert replay.resolve("pig_chain") == scenarios.SCENARIOS / "pig_chain.json"
    with pytest.raises(replay.ReplayError, match="asf_positive"):  # the message lists what there is
        replay.resolve("no_such_thing")
    tags = [replay.fault_tag(f"faults/{name}") for name in replay.faults()]
    assert len(set(tags)) == len(tags) == len(replay.faults())


def test_replay_finds_the_address_of_the_dev_on_its_data_folder(tmp_path: Path) -> None:
    assert replay.default_url(tmp_path) == "http://127.0.0.1:8000"
    (tmp_path / "url").write_text("http://127.0.0.1:18001\n")
    assert replay.default_url(tmp_path) == "http://127.0.0.1:18001"


async def test_a_fault_replays_next_to_its_chain_and_again_changes_nothing(live_url: str, worker: None) -> None:
    tag = scenario_tag()
    chain = await asyncio.to_thread(replay.replay, live_url, ADMIN_TOKEN, "pig_chain", tag)
    assert chain["applied"] == chain["events"] == 10
    assert chain["alerts"] == []
    # The twin shares the chain's event ids and changes one: as it is, it would be a conflict (409). Replayed
    # under its own tag, through the operators the chain registered, it is a chain of its own.
    path = scenarios.SCENARIOS / "faults" / "asf_positive.json"
    first = await asyncio.to_thread(replay.replay, live_url, ADMIN_TOKEN, str(path), None)
    fault_tag = replay.fault_tag("faults/asf_positive")
    assert first["tag"] == fault_tag
    assert first["applied"] == first["events"] == 3
    assert first["alerts"] == [{"rule": "asf_positive", "severity": "critical", "subject": f"SLBATCH0001{fault_tag}"}]
    again = await asyncio.to_thread(replay.replay, live_url, ADMIN_TOKEN, "asf_positive", None)
    assert again == {**first, "operators_registered": 0}


async def test_an_operator_registered_with_other_details_stops_the_replay_before_anything_is_posted(
    live_url: str, worker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = scenario_tag()
    # The case: the README had registered the chain's retail market code as a planting base.
    market = f"442000300001{tag}"
    body = {"code": market, "name": "东升镇蔬菜种植基地", "kind": "planting_base", "region": "442000"}
    status, _ = replay._call(live_url, ADMIN_TOKEN, "POST", "/v1/operators", body)
    assert status == 201

    code = await asyncio.to_thread(replay.run_replay, live_url, ADMIN_TOKEN, ["pig_chain"], tag, Path("/nonexistent"))
    assert code == 1
    err = capsys.readouterr().err
    assert f"operator {market} is already registered with name '东升镇蔬菜种植基地'" in err
    assert "(the scenario says '中山市石岐综合市场')" in err
    assert "kind 'planting_base' (the scenario says 'retail_market')" in err
    assert "nothing was posted" in err
    # Nothing of it: neither its other operators nor its events.
    status, _ = replay._call(live_url, ADMIN_TOKEN, "GET", f"/v1/operators/442000100001{tag}")
    assert status == 404
    sale = scenarios.instantiate(scenarios.load("pig_chain"), tag)["events"][-1]
    status, _ = replay._call(live_url, ADMIN_TOKEN, "GET", f"/v1/events/{sale['event_id']}")
    assert status == 404

    # Even told to go on, the chain cannot put its stall under a planting base.
    with pytest.raises(replay.ReplayError, match="a retailer may only be registered under a retail_market"):
        await asyncio.to_thread(replay.replay, live_url, ADMIN_TOKEN, "pig_chain", tag, accept_existing=True)


async def test_told_to_accept_existing_operators_replay_warns_and_posts(live_url: str, worker: None) -> None:
    tag = scenario_tag()
    plant = f"442000100001{tag}"
    body = {"code": plant, "name": "中山市另一屠宰厂", "kind": "slaughterhouse", "region": "442000"}
    status, _ = replay._call(live_url, ADMIN_TOKEN, "POST", "/v1/operators", body)
    assert status == 201
    warnings: list[str] = []
    result = await asyncio.to_thread(
        replay.replay, live_url, ADMIN_TOKEN, "pig_chain", tag, accept_existing=True, warn=warnings.append
    )
    assert result["operators_registered"] == 5
    assert result["applied"] == result["events"] == 10
    assert warnings == [
        f"operator {plant} is already registered with name '中山市另一屠宰厂' (the scenario says '中山市定点屠宰厂'); "
        "keeping the registered one (--accept-existing)"
    ]
