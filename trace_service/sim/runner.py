"""Post a simulation through the HTTP API, or produce it straight to Kafka, with a progress bar.

Through the API (``via="api"``), as a city's systems would: the operators are registered with an admin
key (parents before their tenants; already registered is fine), each operator without a parent gets its
own key, and every event is posted with the key of the operator that reports it (a market reports for its
wholesalers and stalls); ``regulator.*`` events go with the admin key. Events go out in time order, a
window of simulated time at a time; inside a window each reporter's events are posted in batches, several
requests at once. ``rate`` caps the events per second; 503 and 429 answers are retried after their
``Retry-After``.

Straight to Kafka (``via="kafka"``): every event is produced to the events topic keyed by its operator and
signed, as a registered integrator does (contract section 8). With a URL and an admin key the operators
are registered and an integrator for them is registered through the API first; otherwise the integrator's
key id and secret must be given. ``regulator.*`` events are not an integrator's to send: they are posted
through the API with the admin key.

A late upload of the simulation (``Simulation.late``: a market offline for hours) goes out in time order
like the rest, unless ``hold_late`` is given: then its events are held back until everything else has
been posted and ``hold_late()`` has returned (a benchmark waits there for the service to judge without
them), and posted then.

The copies for ``conflicting_duplicate`` go straight to Kafka when a bootstrap is known, signed by an
integrator registered for their operators; over HTTP they are refused with 409 and raise nothing, and their
truth entries are marked not detectable.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import orjson

from trace_service.contract import signing
from trace_service.sim.events import Simulation

ADMIN = ""  # the poster of regulator events: the admin key
MAX_WINDOW = timedelta(hours=2)  # at most this much simulated time is posted before the next window starts
MAX_RETRIES = 20


class RunError(RuntimeError):
    pass


@dataclass
class Summary:
    via: str
    events: int = 0
    accepted: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    operators_registered: int = 0
    keys_issued: int = 0
    conflicts_sent: int = 0
    conflicts_via: str | None = None
    requests: int = 0
    retries: int = 0
    first_errors: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "events": self.events,
            "accepted": self.accepted,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 2),
            "events_per_s": round(self.events_per_s, 1),
            "operators_registered": self.operators_registered,
            "keys_issued": self.keys_issued,
            "conflicts_sent": self.conflicts_sent,
            "conflicts_via": self.conflicts_via,
            "requests": self.requests,
            "retries": self.retries,
            "first_errors": self.first_errors,
        }

    def render(self) -> str:
        return (
            f"{self.accepted:,} of {self.events:,} events accepted via {self.via} in {self.elapsed_s:.1f} s "
            f"({self.events_per_s:,.0f} events/s), {self.errors:,} errors"
            + (f", {self.conflicts_sent} conflicting copies via {self.conflicts_via}" if self.conflicts_sent else "")
        )


class Progress:
    """One stderr line rewritten with ``\\r``: done/total, a bar, the rate and the errors."""

    def __init__(self, total: int, label: str, out: TextIO | None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.out = out
        self.every = 0.2 if out is not None and out.isatty() else 2.0  # a log file gets fewer redraws
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.errors = 0
        self._lock = threading.Lock()

    def add(self, done: int, errors: int = 0) -> None:
        with self._lock:
            self.done += done
            self.errors += errors
            now = time.monotonic()
            if now - self.last >= self.every or self.done >= self.total:
                self.last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        if self.out is None:
            return
        share = min(1.0, self.done / self.total)
        bar = "#" * int(share * 30)
        rate = self.done / max(now - self.start, 1e-6)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.out.write(
            f"\r{self.label} [{bar:<30}] {share:4.0%} {self.done:,}/{self.total:,}  {rate:,.0f}/s  "
            f"errors {self.errors:,}  eta {eta:4.0f} s "
        )
        self.out.flush()

    def close(self) -> None:
        if self.out is not None:
            self._draw(time.monotonic())
            self.out.write("\n")
            self.out.flush()


class Pacer:
    """Holds senders back so that no more than ``rate`` events a second go out (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.sent = 0
        self._lock = threading.Lock()

    def wait(self, count: int) -> None:
        if not self.rate:
            return
        with self._lock:
            due = self.start + self.sent / self.rate
            self.sent += count
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def find_token(explicit: str | None, data_dir: Path) -> str | None:
    """The admin key: given, ``TRACE_ADMIN_TOKEN``, or the one ``trace-service dev`` keeps in its folder."""
    token = explicit or os.environ.get("TRACE_ADMIN_TOKEN")
    if token:
        return token
    stored = data_dir / "admin-token"
    return stored.read_text().strip() if stored.exists() else None


class Api:
    """The few calls the runner makes, with urllib: the service's public HTTP API."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, token: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, float]:
        """Status, decoded body and the Retry-After seconds (0 when none)."""
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 - the user's URL
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310
                return r.status, orjson.loads(r.read() or b"null"), 0.0
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                detail = orjson.loads(raw or b"null")
            except orjson.JSONDecodeError:
                detail = raw[:300].decode("utf-8", "replace")
            return e.code, detail, float(e.headers.get("Retry-After") or 0)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise RunError(f"cannot reach {self.url}: {getattr(e, 'reason', e)}") from e


def _levels(sim: Simulation) -> list[list[dict[str, Any]]]:
    """Operators in registration order: those without a parent, then their tenants."""
    top = [op.registration() for op in sim.city.operators if not op.parent]
    tenants = [op.registration() for op in sim.city.operators if op.parent]
    return [top, tenants]


def register(api: Api, admin: str, sim: Simulation, pool: ThreadPoolExecutor, summary: Summary) -> None:
    def one(body: dict[str, Any]) -> int:
        status, detail, _ = api.call(admin, "POST", "/v1/operators", orjson.dumps(body))
        if status not in (201, 409):
            raise RunError(f"registering {body['code']}: HTTP {status} {detail}")
        return 1 if status == 201 else 0

    for level in _levels(sim):
        summary.operators_registered += sum(pool.map(one, level))


def issue_keys(api: Api, admin: str, sim: Simulation, pool: ThreadPoolExecutor, summary: Summary) -> dict[str, str]:
    def one(code: str) -> tuple[str, str]:
        status, detail, _ = api.call(admin, "POST", f"/v1/operators/{code}/keys", b'{"name": "simulator"}')
        if status != 201 or not isinstance(detail, dict):
            raise RunError(f"issuing a key to {code}: HTTP {status} {detail}")
        return code, str(detail["key"])

    keys = dict(pool.map(one, sim.city.posting_operators()))
    summary.keys_issued = len(keys)
    return keys


@dataclass(frozen=True)
class Integrator:
    """A direct producer's credentials: its key id and the secret its signatures are made with."""

    key_id: str
    secret: str

    def headers(self, key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        return signing.sign_headers(self.key_id, self.secret, key, value)


def register_integrator(api: Api, admin: str, operators: list[str], name: str = "simulator") -> Integrator:
    """Register an integrator for ``operators`` (admin key); its secret is in the answer, once."""
    body = orjson.dumps({"name": name, "operators": sorted(set(operators))})
    status, detail, _ = api.call(admin, "POST", "/v1/integrators", body)
    if status != 201 or not isinstance(detail, dict):
        raise RunError(f"registering an integrator: HTTP {status} {str(detail)[:300]}")
    return Integrator(str(detail["key_id"]), str(detail["secret"]))


def windows(events: list[dict[str, Any]], size: int, span: timedelta = MAX_WINDOW) -> Iterator[list[dict[str, Any]]]:
    """Consecutive slices of the time-ordered events: ``size`` events, or fewer when they cover ``span``.

    A window is posted before the next one starts, so an event never goes out before one of a window
    ``span`` earlier; inside a window the reporters' batches go out in parallel, in any order, as the
    events of different operators reach a real service.
    """
    start = 0
    while start < len(events):
        limit = datetime.fromisoformat(events[start]["occurred_at"]) + span
        end = start + 1
        while end < len(events) and end - start < size and datetime.fromisoformat(events[end]["occurred_at"]) < limit:
            end += 1
        yield events[start:end]
        start = end


def run_api(
    sim: Simulation,
    url: str,
    admin: str,
    *,
    batch: int = 500,
    rate: float | None = None,
    concurrency: int = 4,
    bootstrap: str | None = None,
    topic: str = "trace.events.v1",
    window: timedelta = MAX_WINDOW,
    shuffle: int | None = None,
    hold_late: Callable[[], None] | None = None,
    out: TextIO | None = sys.stderr,
) -> Summary:
    """Register, issue keys, post every event; then send the conflicting copies.

    ``window`` bounds how far apart in simulated time two events posted in parallel may be: a longer one
    delivers more events out of order (a day: a stall's sales may arrive before its wholesaler's shipment).
    ``shuffle`` (a seed) also posts the batches of a window in random order, a reporter's own included.
    ``hold_late``: post the late uploads' events last, after calling it.
    """
    api = Api(url)
    summary = Summary("api", events=len(sim.events))
    started = time.monotonic()
    poster_of = {op.code: (op.parent or op.code) for op in sim.city.operators}
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        register(api, admin, sim, pool, summary)
        keys = issue_keys(api, admin, sim, pool, summary)
        keys[ADMIN] = admin
        progress = Progress(len(sim.events), "posting", out)
        pacer = Pacer(rate)
        lock = threading.Lock()

        def post(poster: str, items: list[dict[str, Any]]) -> None:
            body = orjson.dumps(items)
            pacer.wait(len(items))
            for _ in range(MAX_RETRIES):
                status, detail, retry_after = api.call(keys[poster], "POST", "/v1/events", body)
                with lock:
                    summary.requests += 1
                if status in (429, 503):
                    with lock:
                        summary.retries += 1
                    time.sleep(retry_after or 1.0)
                    continue
                break
            ok = status in (200, 202)
            with lock:
                if ok:
                    summary.accepted += len(items)
                else:
                    summary.errors += len(items)
                    if len(summary.first_errors) < 5:
                        summary.first_errors.append(f"HTTP {status}: {json.dumps(detail, ensure_ascii=False)[:400]}")
            progress.add(len(items), 0 if ok else len(items))

        size = max(batch, 1) * max(concurrency, 1) * 2
        held = sim.late_ids() if hold_late is not None else set()
        on_time = [e for e in sim.events if e["event_id"] not in held]
        phases = [on_time, [e for e in sim.events if e["event_id"] in held]]
        for n, events in enumerate(phases):
            if n and events and hold_late is not None:
                paused = time.monotonic()
                hold_late()
                started += time.monotonic() - paused  # the rate is of posting, not of waiting
            for part in windows(events, size if window <= MAX_WINDOW else len(events), window):
                groups: dict[str, list[dict[str, Any]]] = {}
                for e in part:
                    poster = ADMIN if e["event_type"].startswith("regulator.") else poster_of.get(e["operator"], ADMIN)
                    groups.setdefault(poster, []).append(e)
                parts = [
                    (poster, items[i : i + batch])
                    for poster, items in groups.items()
                    for i in range(0, len(items), batch)
                ]
                if shuffle is not None:
                    random.Random(shuffle).shuffle(parts)  # noqa: S311 - a test order, not a secret
                jobs = [pool.submit(post, poster, items) for poster, items in parts]
                for job in jobs:
                    job.result()
        progress.close()
        summary.elapsed_s = time.monotonic() - started
        if sim.conflicts:
            if bootstrap:
                # A second system reporting for the same operators: a direct producer, so it signs.
                producer = register_integrator(
                    api, admin, [poster_of[c["operator"]] for c in sim.conflicts], "simulator: conflicting copies"
                )
                summary.conflicts_sent = asyncio.run(_produce(bootstrap, topic, sim.conflicts, None, None, producer))
                summary.conflicts_via = "kafka"
            else:
                for copy in sim.conflicts:
                    status, _, _ = api.call(keys[poster_of[copy["operator"]]], "POST", "/v1/events", orjson.dumps(copy))
                    summary.conflicts_sent += 1
                    if status != 409:
                        summary.first_errors.append(f"a conflicting copy answered HTTP {status}, not 409")
                summary.conflicts_via = "api"
    return summary


async def _produce(
    bootstrap: str,
    topic: str,
    events: list[dict[str, Any]],
    rate: float | None,
    progress: Progress | None,
    integrator: Integrator,
) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=10,
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        start = time.monotonic()
        pending = []
        for i, e in enumerate(events):
            if rate:
                pause = start + i / rate - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
            key, value = e["operator"].encode(), orjson.dumps(e)
            pending.append(await producer.send(topic, value=value, key=key, headers=integrator.headers(key, value)))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                if progress:
                    progress.add(len(pending))
                pending = []
        await asyncio.gather(*pending)
        if progress:
            progress.add(len(pending))
    finally:
        await producer.stop()
    return len(events)


def run_kafka(
    sim: Simulation,
    bootstrap: str,
    *,
    topic: str = "trace.events.v1",
    rate: float | None = None,
    url: str | None = None,
    admin: str | None = None,
    integrator: Integrator | None = None,
    concurrency: int = 4,
    out: TextIO | None = sys.stderr,
) -> Summary:
    """Produce every event straight to the events topic, signed by ``integrator``.

    With a URL and an admin key the operators are registered first, and, unless ``integrator`` is given,
    an integrator for every operator without a parent (their tenants are in its scope) is registered too.
    ``regulator.*`` events go through the API with the admin key, or are counted as errors without one.
    """
    summary = Summary("kafka", events=len(sim.events))
    started = time.monotonic()
    api = Api(url) if url else None
    if api is not None and admin:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            register(api, admin, sim, pool, summary)
        if integrator is None:
            integrator = register_integrator(api, admin, [op.code for op in sim.city.operators if not op.parent])
    if integrator is None:
        raise RunError(
            "producing straight to Kafka needs an integrator: pass --integrator-key-id and --integrator-secret, "
            "or an admin key (--token) and --url to register one"
        )
    staff_only = [e for e in sim.events if e["event_type"].startswith("regulator.")]
    produced = [e for e in sim.events if not e["event_type"].startswith("regulator.")]
    progress = Progress(len(produced), "producing", out)
    summary.accepted = asyncio.run(_produce(bootstrap, topic, produced, rate, progress, integrator))
    progress.close()
    if staff_only and api is not None and admin:
        for i in range(0, len(staff_only), 500):
            part = staff_only[i : i + 500]
            status, detail, _ = api.call(admin, "POST", "/v1/events", orjson.dumps(part))
            summary.requests += 1
            if status in (200, 202):
                summary.accepted += len(part)
            else:
                summary.errors += len(part)
                summary.first_errors.append(f"regulator events: HTTP {status}: {str(detail)[:300]}")
    elif staff_only:
        summary.errors += len(staff_only)
        summary.first_errors.append(
            f"{len(staff_only)} regulator.* events not sent: only the API may send them (pass --token and --url)"
        )
    summary.elapsed_s = time.monotonic() - started
    if sim.conflicts:
        summary.conflicts_sent = asyncio.run(_produce(bootstrap, topic, sim.conflicts, None, None, integrator))
        summary.conflicts_via = "kafka"
    return summary


def truth_document(sim: Simulation, summary: Summary | None) -> dict[str, Any]:
    """The ground truth as written to ``--truth``: a conflicting copy sent over HTTP raises nothing."""
    doc = sim.truth_json()
    if summary is not None:
        doc["run"] = summary.as_json()
        if summary.conflicts_via != "kafka":
            for t in doc["truth"]:
                if t.get("needs") == "kafka":
                    t["detectable"] = False
                    t["note"] += " (not sent to Kafka: no alert expected)"
    return doc


def write_truth(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def describe(sim: Simulation, say: Callable[[str], None]) -> None:
    st = sim.stats()
    say(
        f"simulated {sim.days} day(s) {sim.first_day}..{sim.last_day} of a {sim.city.scale.name} city "
        f"(seed {sim.city.seed}): {len(sim.city.operators):,} operators, {st['events']:,} events "
        f"({st['events_per_day']:,}/day, peak hour {st['peak_hour']:02d}:00), {st['pigs_slaughtered_per_day']:,} "
        f"pigs/day, {st['veg_tonnes_per_day']:,} t vegetables/day, {st['import_lots']:,} imported lots "
        f"({st['imported_tonnes_per_day']:,} t/day), {st['faults']} faults"
    )
    for line in sim.skipped:
        say(f"skipped: {line}")
