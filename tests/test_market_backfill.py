"""Market alerts that late data cannot fool (issue 12).

The same generated month of four markets and two slaughterhouses, with a supply drop, a glut, a price
spike, a stock-out and a slaughter drop on known days, is delivered live (hour by hour, the clock moving
with it), and as backfills: site by site, day by day, newest day first, shuffled, and site by site with
each site's data settling before the next arrives. Every order ends with the same alerts. In every order
one market's morning reaches the service late (an outage, then everything at once): the shortfall it showed
is withdrawn by the service with the day's final figures. Time is driven through the ``now`` the market
service takes; nothing waits on the wall clock.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Actors, as_api, code
from tests.test_market import SHANGHAI, at, engine, market_with_stall, receipt, sale, slaughtered
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import Finding, Level
from trace_service.chain import projection as chain_projection
from trace_service.chain import writes as chain_repo
from trace_service.contract.events import build_catalogue
from trace_service.market import rules, service
from trace_service.market.rules import MarketThresholds
from trace_service.settings import Settings
from trace_service.worker.service import Record, apply_batch

__all__ = ["engine"]  # the fixture, shared with test_market

# Every settled day in one sweep: other tests' days may be due in the same database.
T = MarketThresholds(settle_days_per_sweep=400)
QUIET = timedelta(seconds=T.settle_quiet_seconds)
DAYS = 29  # the last day has four baseline weeks
LATE = ("D", 5, 3, 10)  # market D's records of day L-5 from 03:00 to 10:00 arrive at 10:00 (or last of all)
SWEEP_HOURS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 23)

# (rule, market role, product role, days before the last, level): what the month must raise, in any order.
EXPECTED = {
    ("supply_drop", "A", "p1", 0, "III"),  # A's receipts of p1 cut to 40 %
    ("supply_surge", "B", "p2", 1, "IV"),  # B receives 2.5 times its p2
    ("price_spike", "C", "p1", 2, "III"),  # C's p1 sold 60 % dearer
    ("stock_out", "city", "p2", 3, "III"),  # no p2 at A, C and D ...
    ("supply_drop", "A", "p2", 3, "III"),  # ... which received none
    ("supply_drop", "C", "p2", 3, "III"),
    ("supply_drop", "D", "p2", 3, "III"),
    ("slaughter_drop", "city", "PIG-LIVE", 4, "III"),  # the plants slaughter 40 % of their pigs
}
# The morning of D that arrived late: a shortfall while it was missing, made up once it arrived.
WITHDRAWN = {("supply_drop", "D", "p1", 5), ("supply_drop", "D", "p2", 5)}


@dataclass(frozen=True)
class Item:
    event: dict[str, Any]
    site: str  # A..D, or "plants"
    day: date
    hour: int
    late: bool = False  # part of the late upload

    @property
    def arrives(self) -> int:
        """The hour it reaches the service when delivered live."""
        return LATE[3] if self.late else self.hour


@dataclass
class World:
    markets: dict[str, tuple[str, str]]  # role -> (market, stall)
    plants: list[str]
    products: dict[str, str]  # role -> product code
    first: date
    items: list[Item]

    @property
    def last(self) -> date:
        return self.first + timedelta(days=DAYS - 1)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(DAYS)]

    def role(self, subject: str) -> tuple[str, str, int] | None:
        """(market role, product role, days before the last) of a subject of this world, else None."""
        market, product, day = subject.split("/")
        markets = {m: r for r, (m, _) in self.markets.items()} | {"city": "city"}
        products = {c: r for r, c in self.products.items()} | {"PIG-LIVE": "PIG-LIVE"}
        when = date.fromisoformat(day)
        if market not in markets or product not in products or not self.first <= when <= self.last:
            return None
        if market == "city" and product == "PIG-LIVE" and not self.plants:
            return None
        return markets[market], products[product], (self.last - when).days


def _wobble(i: int, k: int, size: float) -> float:
    """A small deterministic day-to-day variation, within +-size."""
    return 1 + size * (((i * 7 + k * 3) % 5) - 2) / 2


def build(markets: dict[str, tuple[str, str]], plants: list[str], first: date) -> World:
    products = {"p1": "T-" + code("", 8), "p2": "T-" + code("", 8)}
    w = World(markets, plants, products, first, [])
    for i, day in enumerate(w.days):
        back = (w.last - day).days
        for k, (role, (_, stall)) in enumerate(sorted(markets.items())):
            late = (role, back) == LATE[:2]
            for j, (p, base, price) in enumerate((("p1", 100.0 + 20 * k, 8.0), ("p2", 60.0 + 10 * k, 6.0))):
                if back == 3 and p == "p2" and role != "B":
                    continue  # the stock-out: nothing received, nothing sold
                kg = base * _wobble(i, k + j, 0.04)
                if (back, role, p) == (0, "A", "p1"):
                    kg *= 0.4
                if (back, role, p) == (1, "B", "p2"):
                    kg *= 2.5
                lot = code("L", 16)
                hour = 3
                event = receipt(stall, at(day, hour, 10 + 30 * j), round(kg, 1), products[p], lot=lot)
                w.items.append(Item(event, role, day, hour, late and LATE[2] <= hour < LATE[3]))
                unit = price * _wobble(i, k + j + 1, 0.02) * (1.6 if (back, role, p) == (2, "C", "p1") else 1)
                for hour, minute in ((9, 15), (11, 30), (15, 0), (17, 20)):
                    event = sale(stall, at(day, hour, minute + j), lot, 1.5, round(unit, 2))
                    w.items.append(Item(event, role, day, hour, late and LATE[2] <= hour < LATE[3]))
        for n, plant in enumerate(plants):
            heads = round(100 * _wobble(i, n, 0.02) * (0.4 if back == 4 else 1))
            w.items.append(Item(slaughtered(plant, at(day, 2, 10 * n), heads), "plants", day, 2))
    return w


# City-wide figures and the market monitor's per-day claims are shared by every test of a session, so each
# test takes a slot of eight weeks of its own, far back, before test_market's days (2000 on). Slots are
# handed out in turn from a random start: within one session no two tests meet on a day (random days did,
# now and then, and a sweep's claim of an hour then belonged to the other test).
_SLOTS = itertools.count(secrets.randbelow(180))


def slot_monday() -> date:
    """The first day (a Monday) of a fresh eight-week slot of days."""
    return date(1970, 2, 2) + timedelta(weeks=8 * (next(_SLOTS) % 180))


async def world(actors: Actors, *, plants: bool = True) -> World:
    """Fresh markets, plants and products on a month of days no other test uses."""
    markets = {role: await market_with_stall(actors) for role in "ABCD"}
    plant_codes = [await actors.operator(kind="slaughterhouse") for _ in range(2)] if plants else []
    # The city's heads of these days are this world's; any weekday.
    first = slot_monday() + timedelta(days=secrets.randbelow(7))
    return build(markets, plant_codes, first)


# -- driving the service -----------------------------------------------------------------------------


async def deliver(engine: AsyncEngine, settings: Settings, items: list[Item], now: datetime) -> None:
    """One worker batch, as the worker runs it (chain projection, market figures and rules, the findings
    stored), arriving at ``now``."""
    catalogue = build_catalogue(settings.codes)
    events = [catalogue.event.validate_json(orjson.dumps(i.event)) for i in items]
    async with engine.begin() as conn:
        await chain_repo.apply_plan(conn, chain_projection.plan(events))
        findings = await service.apply(conn, events, settings, now=now, thresholds=T)
        await alerts_repo.write_findings(conn, findings)


async def sweep(engine: AsyncEngine, settings: Settings, now: datetime) -> None:
    """The worker's tick at ``now``."""
    async with engine.begin() as conn:
        await alerts_repo.write_findings(conn, await service.sweep(conn, settings, now=now, thresholds=T))


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


async def live(engine: AsyncEngine, settings: Settings, w: World) -> None:
    """Each hour's records as the hour ends, the clock's sweeps through the day; D's late morning at 10:00."""
    due: dict[tuple[date, int], list[Item]] = {}
    for item in w.items:
        due.setdefault((item.day, item.arrives), []).append(item)
    for day in w.days:
        for hour in range(24):
            now = local(day, hour, 50)
            if batch := due.get((day, hour)):
                await deliver(engine, settings, batch, now)
            if batch or hour in SWEEP_HOURS:
                await sweep(engine, settings, now)
    await sweep(engine, settings, local(w.last + timedelta(days=1), 4) + QUIET)


def chunks(items: list[Item], size: int = 60) -> Iterator[list[Item]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def backfill(
    engine: AsyncEngine, settings: Settings, w: World, groups: list[list[Item]], *, settle_between: bool = False
) -> None:
    """The on-time records group after group, a batch a minute (so they all arrive within the quiet period,
    unless ``settle_between``: then each group's data settles before the next arrives); the sweeps once it
    has settled; then the late upload, and the sweeps once that has settled."""
    now = local(w.last + timedelta(days=3), 10)
    for group in groups:
        for batch in chunks([i for i in group if not i.late]):
            await deliver(engine, settings, batch, now)
            now += timedelta(minutes=1)
        if settle_between:
            now += QUIET + timedelta(minutes=5)
            await sweep(engine, settings, now)
    now += QUIET + timedelta(minutes=5)
    await sweep(engine, settings, now)
    await deliver(engine, settings, [i for i in w.items if i.late], now)
    now += QUIET + timedelta(minutes=5)
    await sweep(engine, settings, now)


def by_site(w: World) -> list[list[Item]]:
    return [[i for i in w.items if i.site == site] for site in ("A", "B", "C", "D", "plants")]


def by_day(w: World, *, newest_first: bool = False) -> list[list[Item]]:
    return [[i for i in w.items if i.day == day] for day in sorted(w.days, reverse=newest_first)]


def shuffled(w: World, seed: int) -> list[list[Item]]:
    items = list(w.items)
    random.Random(seed).shuffle(items)
    return [items]


@dataclass(frozen=True)
class Outcome:
    raised: set[tuple[str, str, str, int, str]]  # open or acknowledged, or resolved by a regulator
    withdrawn: dict[tuple[str, str, str, int], str]  # resolved by the service, with its note
    versions: dict[tuple[str, str, str, int], int]


async def outcome(db: asyncpg.Connection, w: World) -> Outcome:
    rows = await db.fetch(
        """SELECT rule, subject_code, level, status, resolved_by, resolved_note, version FROM alerts
           WHERE subject_type = 'market' AND split_part(subject_code, '/', 3) = ANY($1::text[])""",
        [d.isoformat() for d in w.days],
    )
    raised, withdrawn, versions = set(), {}, {}
    for r in rows:
        role = w.role(r["subject_code"])
        if role is None:
            continue
        versions[(r["rule"], *role)] = r["version"]
        if r["status"] == "resolved" and r["resolved_by"] == rules.SYSTEM:
            withdrawn[(r["rule"], *role)] = r["resolved_note"]
        else:
            raised.add((r["rule"], *role, r["level"]))
    return Outcome(raised, withdrawn, versions)


def check_withdrawal(o: Outcome, w: World) -> None:
    """The late morning's shortfalls are withdrawn with the day's final figures."""
    assert set(o.withdrawn) >= WITHDRAWN
    for key in WITHDRAWN:
        note = o.withdrawn[key]
        assert "Withdrawn" in note
        assert "撤回" in note
        assert "kg received over the day" in note
        assert str(w.last - timedelta(days=5)) in note


# -- the tests ---------------------------------------------------------------------------------------


def test_the_generated_month_has_its_shocks_and_its_late_morning() -> None:
    w = build({r: (f"M{r}", f"S{r}") for r in "ABCD"}, ["P1", "P2"], date(1990, 1, 1))
    assert len(w.days) == DAYS
    assert {i.site for i in w.items if i.late} == {"D"}
    assert {i.day for i in w.items if i.late} == {w.last - timedelta(days=5)}
    assert {i.hour for i in w.items if i.late} == {3, 9}
    # The stock-out day: p2 at B only.
    stock_out_day = w.last - timedelta(days=3)
    p2 = w.products["p2"]
    sellers = {
        i.site
        for i in w.items
        if i.day == stock_out_day and i.event["event_type"] == "trade.received"
        for line in i.event["data"]["lines"]
        if line.get("product_code") == p2
    }
    assert sellers == {"B"}


async def test_live_delivery_raises_the_shocks_and_withdraws_the_late_shortfall(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    w = await world(actors)
    await live(engine, settings, w)
    o = await outcome(db, w)
    assert o.raised == EXPECTED
    assert set(o.withdrawn) == WITHDRAWN
    check_withdrawal(o, w)


@pytest.mark.parametrize("order", ["site", "day", "newest", "shuffled"])
async def test_a_backfill_in_any_order_raises_what_live_delivery_raises(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection, order: str
) -> None:
    w = await world(actors)
    groups = {
        "site": by_site,
        "day": by_day,
        "newest": lambda w: by_day(w, newest_first=True),
        "shuffled": lambda w: shuffled(w, 12),
    }[order](w)
    await backfill(engine, settings, w, groups)
    o = await outcome(db, w)
    assert o.raised == EXPECTED
    # Delivered within the quiet period of each other, nothing is judged before it is all there: the only
    # withdrawal is the late morning's.
    assert set(o.withdrawn) == WITHDRAWN
    check_withdrawal(o, w)


async def test_a_backfill_that_settles_piece_by_piece_ends_with_the_same_alerts(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    """The first two weeks of every site, then the rest of the month site by site, each piece settling before
    the next arrives: the markets whose last weeks have not arrived yet look silent against their first
    weeks and raise shortfalls, which the service withdraws as their data arrives."""
    w = await world(actors)
    half = w.first + timedelta(days=14)
    groups = [[i for i in w.items if i.day < half]]
    groups += [[i for i in group if i.day >= half] for group in by_site(w)]
    await backfill(engine, settings, w, groups, settle_between=True)
    o = await outcome(db, w)
    assert o.raised == EXPECTED
    premature = set(o.withdrawn) - WITHDRAWN
    assert {(rule, site) for rule, site, _, _ in premature} == {
        ("supply_drop", "B"),
        ("supply_drop", "C"),
        ("supply_drop", "D"),
        ("slaughter_drop", "city"),
        ("stock_out", "city"),  # sites whose sales had not arrived
    }
    stock = [note for (rule, *_), note in o.withdrawn.items() if rule == "stock_out"]
    assert all("sample sites" in note for note in stock)
    check_withdrawal(o, w)


async def test_a_day_nobody_has_reported_yet_is_not_judged_silent(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    """A backfill that has not reached the day in progress: its markets are not silent, they are not
    delivered yet. Once one market reports for the day, the others' silence is news."""
    w = await world(actors, plants=False)
    for batch in chunks([i for i in w.items if i.day < w.last]):
        await deliver(engine, settings, batch, local(w.last - timedelta(days=1), 23))
    for hour in (5, 6):
        await sweep(engine, settings, local(w.last, hour))
    assert {e for e in (await outcome(db, w)).raised if e[3] == 0} == set()

    await deliver(
        engine, settings, [i for i in w.items if i.day == w.last and i.site == "B" and i.hour < 6], local(w.last, 6)
    )
    await sweep(engine, settings, local(w.last, 7))
    today = {e for e in (await outcome(db, w)).raised if e[3] == 0}
    assert today == {("supply_drop", site, p, 0, "III") for site in "ACD" for p in ("p1", "p2")}


async def test_a_shuffled_backfill_through_the_worker_raises_the_same_alerts(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    """The real worker apply path (authentication, ownership, parking of sales that come before their lot),
    on the wall clock; the sweeps run once the quiet period has passed."""
    w = await world(actors, plants=False)
    catalogue = build_catalogue(settings.codes)
    poster = {stall: market for market, stall in w.markets.values()}
    items = [i for i in w.items if not i.late]
    random.Random(5).shuffle(items)

    async def feed(batch: list[Item], offset: int) -> None:
        records = [
            Record(settings.topic_events, 0, offset + n, k, v, tuple(h))
            for n, i in enumerate(batch)
            for k, v, h in as_api(settings, [i.event], actor=poster[i.event["operator"]])
        ]
        outcome_ = await apply_batch(engine, catalogue, records, future_skew_seconds=300, settings=settings)
        assert outcome_.dead == []
        while outcome_.unparked:  # what the worker does right after a batch that created parked events' lots
            outcome_ = await apply_batch(
                engine, catalogue, outcome_.unparked, future_skew_seconds=300, settings=settings
            )
            assert outcome_.dead == []

    for n, batch in enumerate(chunks(items)):
        await feed(batch, n * 100)
    await sweep(engine, settings, datetime.now(UTC) + QUIET + timedelta(minutes=1))
    await feed([i for i in w.items if i.late], 90_000)
    await sweep(engine, settings, datetime.now(UTC) + QUIET + timedelta(minutes=2))
    o = await outcome(db, w)
    assert o.raised == {e for e in EXPECTED if e[0] != "slaughter_drop"}
    assert set(o.withdrawn) == WITHDRAWN
    check_withdrawal(o, w)


async def test_an_ongoing_surge_gets_a_new_version_only_when_it_moves_by_the_step(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    """A glut growing batch by batch: one version while it grows by less than 10 % of the baseline, a new
    one once it has moved by more, or when its level changes or its day becomes final."""
    market, stall = await market_with_stall(actors)
    p = "T-" + code("", 8)
    day = slot_monday() + timedelta(weeks=5, days=2)  # a Wednesday with four weeks of history in its slot
    history = [Item(receipt(stall, at(day - timedelta(weeks=n), 4), 100.0, p), "A", day, 4) for n in range(1, 5)]
    await deliver(engine, settings, history, local(day - timedelta(days=1), 12))
    subject = rules.subject_code(market, p, day)

    async def version() -> tuple[int, float] | None:
        row = await db.fetchrow(
            """SELECT version, (evidence->>'value')::float AS v FROM alerts
               WHERE rule = 'supply_surge' AND subject_code = $1""",
            subject,
        )
        return None if row is None else (row["version"], row["v"])

    async def receive(kg: float, minute: int) -> None:
        item = Item(receipt(stall, at(day, 3, minute), kg, p), "A", day, 3)
        await deliver(engine, settings, [item], local(day, 7, minute))

    await receive(210.0, 0)  # 210 kg against 100: a glut
    assert await version() == (1, 210.0)
    for minute in range(1, 6):  # +2 kg a batch: 10 kg in all, not more than 10 % of the baseline
        await receive(2.0, minute)
    assert await version() == (1, 210.0)
    await receive(2.0, 6)  # 222 kg: moved by 12 kg
    assert await version() == (2, 222.0)
    outbox = await db.fetchval(
        "SELECT count(*) FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id WHERE a.subject_code = $1", subject
    )
    assert outbox == 2
    # The day's totals, once settled: a new version although the figures did not move.
    await sweep(engine, settings, local(day + timedelta(days=1), 4) + QUIET)
    assert await version() == (3, 222.0)
    row = await db.fetchrow("SELECT level, evidence FROM alerts WHERE subject_code = $1", subject)
    assert row["level"] == Level.IV.value
    assert orjson.loads(row["evidence"])["through_hour"] is None


def test_worth_a_version_is_the_throttle() -> None:
    base = {"value": 210.0, "baseline": 100.0, "through_hour": 7}
    stored = rules.AlertState("IV", "open", None, base)
    finding = Finding(
        rule="supply_surge",
        subject_type="market",
        subject_code="M/P/2026-11-25",
        severity=rules.severity_of(Level.IV),
        message_zh="",
        message_en="",
        level=Level.IV,
        evidence=base | {"value": 219.0},
    )
    assert not rules.worth_a_version(finding, stored, T)
    assert rules.worth_a_version(finding, None, T)  # a new alert
    assert rules.worth_a_version(finding, rules.AlertState("III", "open", None, base), T)  # another level
    assert rules.worth_a_version(finding, rules.AlertState("IV", "resolved", rules.SYSTEM, base), T)  # withdrawn
    assert not rules.worth_a_version(finding, rules.AlertState("IV", "resolved", "k7Qm2xY9pLw3", base), T)
    final = replace(finding, evidence=base | {"value": 219.0, "through_hour": None})
    assert rules.worth_a_version(final, stored, T)
    moved = replace(finding, evidence=base | {"value": 221.0})
    assert rules.worth_a_version(moved, stored, T)
    assert rules.worth_a_version(finding, stored, MarketThresholds(revise_step=0))
