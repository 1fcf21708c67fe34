"""``trace-service replay``: post a scenario stream (operators, then events) to a running service.

Uses only the public HTTP API with an admin key, so it works against any deployment.

- A scenario is named by file, by name (``pig_chain``) or, for the faulty twins, by rule
  (``asf_positive`` is ``events/scenarios/faults/asf_positive.json``).
- A faulty twin shares its base chain's event ids and codes but changes some events: replayed as it is
  next to its base it would be a conflicting duplicate (409). So it is replayed under a tag of its own,
  derived from its name: its lots, numbers, ear tags and event ids are its own, its operators are the
  base chain's. Replaying it again is a no-op, like any replay.
- An operator the server already has must have the scenario's details (name, kind, region, parent).
  Otherwise the scenario's events would be recorded against another operator (a sale shown at the wrong
  market), so replay says which and posts nothing, unless told to accept the server's operators.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trace_service.chain import scenarios

DEFAULT_URL = "http://127.0.0.1:8000"
URL_FILE = "url"  # <data-dir>/url: where the `dev` on that folder serves, written when it is ready
DATABASE_FILE = "database-url"  # <data-dir>/database-url: its embedded Postgres, for `report`
COMPARED = ("name", "kind", "region", "parent")
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ReplayError(RuntimeError):
    pass


def _call(url: str, token: str, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)  # noqa: S310 - the user's URL
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read() or b"null")
        except ValueError:
            detail = None
        return e.code, detail
    except urllib.error.URLError as e:
        raise ReplayError(f"cannot reach {url}: {e.reason}") from e


def find_token(explicit: str | None, data_dir: Path) -> str:
    token = explicit or os.environ.get("TRACE_ADMIN_TOKEN")
    if token:
        return token
    stored = data_dir / "admin-token"
    if stored.exists():
        return stored.read_text().strip()
    raise ReplayError(
        "no admin key: pass --token, set TRACE_ADMIN_TOKEN, or run from the folder of `trace-service dev`"
    )


def default_url(data_dir: Path) -> str:
    """The address of the ``dev`` running on ``data_dir`` (it writes ``<data-dir>/url``), else the default."""
    try:
        written = (data_dir / URL_FILE).read_text().strip()
    except OSError:
        return DEFAULT_URL
    return written or DEFAULT_URL


def available() -> list[str]:
    """The normal chains: what ``replay`` with no name posts."""
    return sorted(p.stem for p in scenarios.SCENARIOS.glob("*.json"))


def faults() -> list[str]:
    """The faulty twins, by rule."""
    return sorted(p.stem for p in (scenarios.SCENARIOS / "faults").glob("*.json"))


def resolve(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (scenarios.SCENARIOS / f"{name}.json", scenarios.SCENARIOS / "faults" / f"{name}.json"):
        if candidate.is_file():
            return candidate
    raise ReplayError(
        f"no scenario {name!r}: give a file, a chain ({', '.join(available())}) or a fault ({', '.join(faults())})"
    )


def fault_tag(name: str) -> str:
    """The tag a faulty twin is replayed under by default: three characters derived from its name."""
    n = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return "".join(_ALPHABET[(n // 36**i) % 36] for i in range(3))


def load(name: str) -> dict[str, Any]:
    path = resolve(name).resolve()
    try:  # a scenario of the catalogue may name its base by its catalogue name (faults/…)
        scenario = scenarios.load(str(path.relative_to(scenarios.SCENARIOS).with_suffix("")))
    except ValueError:
        scenario = scenarios.load(path.stem, path.parent)
    scenario.setdefault("name", path.stem)
    return scenario


def differences(wanted: dict[str, Any], registered: dict[str, Any]) -> list[str]:
    """How a registered operator differs from the scenario's, field by field."""
    return [
        f"{field} {registered.get(field)!r} (the scenario says {wanted.get(field)!r})"
        for field in COMPARED
        if wanted.get(field) != registered.get(field)
    ]


def _in_parent_order(operators: list[dict[str, Any]]) -> list[dict[str, Any]]:
    codes = {op["code"] for op in operators}
    ordered: list[dict[str, Any]] = []
    done: set[str] = set()
    pending = list(operators)
    while pending:
        ready = [op for op in pending if not op.get("parent") or op["parent"] in done or op["parent"] not in codes]
        if not ready:
            raise ReplayError(f"operators whose parents form a cycle: {[op['code'] for op in pending]}")
        for op in ready:
            ordered.append(op)
            done.add(op["code"])
            pending.remove(op)
    return ordered


def register_operators(
    url: str, token: str, operators: list[dict[str, Any]], *, accept_existing: bool, warn: Callable[[str], None]
) -> int:
    """Register the operators the server does not have yet; how many were registered.

    Every operator is looked up first, and when one the server already has differs from the scenario's,
    nothing is registered (unless ``accept_existing``, which keeps the server's and says so).
    """

    def read(code: str) -> dict[str, Any] | None:
        status, body = _call(url, token, "GET", f"/v1/operators/{urllib.parse.quote(code, safe='')}")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise ReplayError(f"reading operator {code}: HTTP {status} {body}")
        return body

    def check(op: dict[str, Any], registered: dict[str, Any]) -> str | None:
        diff = differences(op, registered)
        return f"operator {op['code']} is already registered with {', '.join(diff)}" if diff else None

    ordered = _in_parent_order(operators)
    registered = {op["code"]: read(op["code"]) for op in ordered}
    problems = [p for op in ordered if (row := registered[op["code"]]) is not None and (p := check(op, row))]
    if problems and not accept_existing:
        raise ReplayError(
            "; ".join(problems) + ". Its events would be recorded against that operator, so nothing was posted. "
            "Replay into a fresh data folder, give --tag to replay under new codes, or --accept-existing to "
            "post anyway"
        )
    for problem in problems:
        warn(f"{problem}; keeping the registered one (--accept-existing)")
    count = 0
    for op in ordered:
        if registered[op["code"]] is not None:
            continue
        status, body = _call(url, token, "POST", "/v1/operators", op)
        if status == 201:
            count += 1
        elif status == 409:  # registered meanwhile by someone else: judge it like the others
            now = read(op["code"])
            late = check(op, now) if now is not None else None
            if late and not accept_existing:
                raise ReplayError(f"{late}; nothing of the scenario's events was posted")
            if late:
                warn(f"{late}; keeping the registered one (--accept-existing)")
        else:
            raise ReplayError(f"registering {op['code']}: HTTP {status} {body}")
    return count


def replay(
    url: str,
    token: str,
    name: str,
    tag: str | None,
    *,
    accept_existing: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    warn = warn or _say
    scenario = load(name)
    if tag:
        scenario = scenarios.instantiate(scenario, tag)
    elif "base" in scenario:
        tag = fault_tag(scenario["name"])
        scenario = scenarios.instantiate(scenario, tag, operators=False)
    registered = register_operators(url, token, scenario["operators"], accept_existing=accept_existing, warn=warn)
    status, body = _call(url, token, "POST", "/v1/events?wait=true", scenario["events"])
    if status not in (200, 202):
        raise ReplayError(f"posting the events: HTTP {status} {body}")
    answers = body.get("events", []) if isinstance(body, dict) else []
    statuses = [e["status"] for e in answers]
    alerts: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for alert in answer.get("alerts", []):
            alerts.setdefault(
                alert["id"],
                {"rule": alert["rule"], "severity": alert["severity"], "subject": alert["subject"]["code"]},
            )
    result: dict[str, Any] = {"scenario": scenario["name"]}
    if tag:
        result["tag"] = tag
    result |= {
        "operators_registered": registered,
        "events": len(scenario["events"]),
        "applied": statuses.count("applied"),
        "complete": bool(isinstance(body, dict) and body.get("complete")),
        "sale_codes": [e["data"]["sale_code"] for e in scenario["events"] if e["event_type"] == "retail.sold"],
        "alerts": list(alerts.values()),
    }
    return result


def _say(message: str) -> None:
    print(f"trace-service replay: {message}", file=sys.stderr)  # noqa: T201


def run_replay(
    url: str | None,
    token: str | None,
    names: list[str],
    tag: str | None,
    data_dir: Path,
    *,
    accept_existing: bool = False,
) -> int:
    try:
        key = find_token(token, data_dir)
        target = url or default_url(data_dir)
        for name in names or available():
            result = replay(target, key, name, tag, accept_existing=accept_existing)
            print(json.dumps(result, ensure_ascii=False))  # noqa: T201
    except (ReplayError, ValueError) as exc:
        _say(str(exc))
        return 1
    return 0
