"""``trace-service replay``: post a scenario stream (operators, then events) to a running service.

Uses only the public HTTP API with an admin key, so it works against any deployment.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from trace_service.chain import scenarios


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


def resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    candidate = scenarios.SCENARIOS / f"{name}.json"
    if candidate.exists():
        return candidate
    raise ReplayError(f"no scenario {name!r} (a file, or one of: {', '.join(available())})")


def available() -> list[str]:
    return sorted(p.stem for p in scenarios.SCENARIOS.glob("*.json"))


def replay(url: str, token: str, name: str, tag: str | None) -> dict[str, Any]:
    path = resolve(name).resolve()
    try:  # a scenario of the catalogue may name its base by its catalogue name (faults/…)
        scenario = scenarios.load(str(path.relative_to(scenarios.SCENARIOS).with_suffix("")))
    except ValueError:
        scenario = scenarios.load(path.stem, path.parent)
    if tag:
        scenario = scenarios.instantiate(scenario, tag)
    registered = 0
    pending = list(scenario["operators"])
    done: set[str] = set()
    while pending:
        ready = [op for op in pending if not op.get("parent") or op["parent"] in done]
        if not ready:
            raise ReplayError(f"operators whose parent is missing: {[op['code'] for op in pending]}")
        for op in ready:
            status, body = _call(url, token, "POST", "/v1/operators", op)
            if status == 201:
                registered += 1
            elif status != 409:  # already registered is fine: replays are idempotent
                raise ReplayError(f"registering {op['code']}: HTTP {status} {body}")
            done.add(op["code"])
            pending.remove(op)
    status, body = _call(url, token, "POST", "/v1/events?wait=true", scenario["events"])
    if status not in (200, 202):
        raise ReplayError(f"posting the events: HTTP {status} {body}")
    statuses = [e["status"] for e in body.get("events", [])] if isinstance(body, dict) else []
    sales = [e["data"]["sale_code"] for e in scenario["events"] if e["event_type"] == "retail.sold"]
    return {
        "scenario": scenario.get("name", path.stem),
        "operators_registered": registered,
        "events": len(scenario["events"]),
        "applied": statuses.count("applied"),
        "complete": bool(isinstance(body, dict) and body.get("complete")),
        "sale_codes": sales,
    }


def run_replay(url: str, token: str | None, names: list[str], tag: str | None, data_dir: Path) -> int:
    try:
        key = find_token(token, data_dir)
        for name in names or available():
            result = replay(url, key, name, tag)
            print(json.dumps(result, ensure_ascii=False))  # noqa: T201
    except ReplayError as exc:
        print(f"trace-service replay: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
