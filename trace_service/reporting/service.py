"""``trace-service report``: write a day's upward report, then push it to ``TRACE_REPORT_URL``.

Writing. The day's events are streamed from Postgres in node order and each node's file is written in one pass
to a temporary file and hashed on the way. A file whose bytes are already on disk is left untouched, so a
second run over the same records changes nothing (not even a file's modification time); files of the day that
the report no longer has are removed. What each file holds is recorded in ``report_files``.

Pushing. Each file that the receiver has not acknowledged with exactly these bytes is POSTed to
``<TRACE_REPORT_URL>/<date>/<name>``, in name order, then the manifest, only once every file is in. An
acknowledgement (2xx) is recorded at once, so a run that fails half-way is resumed by the next run from the
first file not acknowledged, and a run with nothing new pushes nothing. Each POST carries an
``Idempotency-Key`` of the date, the name and the digest, so a receiver that got a file whose answer was lost
recognises it when it comes again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service import __version__
from trace_service.db.uow import unit_of_work
from trace_service.reporting import format as fmt
from trace_service.reporting import repository as repo
from trace_service.settings import Settings

Say = Callable[[str], None]
PROGRESS_EVERY = 20_000  # records between progress lines while writing


@dataclass
class Result:
    day: date
    folder: Path
    files: int = 0
    records: int = 0
    written: list[str] = field(default_factory=list)  # files whose bytes changed in this run
    pushed: list[str] = field(default_factory=list)
    unpushed: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and not self.unpushed


class _Node:
    """One node's file being written: a temporary file next to its final place, hashed as it grows."""

    def __init__(self, folder: Path, operator: str, kind: str | None, region: str | None) -> None:
        self.operator, self.kind, self.region = operator, kind, region
        self.name = fmt.file_name(operator)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.out = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.records = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.hash.update(data)
        self.records += 1
        self.size += len(data)

    def finish(self, folder: Path) -> tuple[fmt.NodeFile, bool]:
        """Put the file in place unless the same bytes are already there; whether it changed."""
        self.out.close()
        final = folder / self.name
        digest = self.hash.hexdigest()
        same = final.is_file() and final.stat().st_size == self.size and _file_digest(final) == digest
        if same:
            self.tmp.unlink()
        else:
            self.tmp.chmod(0o644)
            os.replace(self.tmp, final)
        node = fmt.NodeFile(self.name, self.operator, self.kind, self.region, self.records, self.size, digest)
        return node, not same

    def discard(self) -> None:
        self.out.close()
        self.tmp.unlink(missing_ok=True)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _put(folder: Path, name: str, data: bytes) -> bool:
    """Write a small file atomically unless it already holds these bytes; whether it changed."""
    final = folder / name
    if final.is_file() and final.read_bytes() == data:
        return False
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    Path(tmp).chmod(0o644)
    os.replace(tmp, final)
    return True


async def write(engine: AsyncEngine, settings: Settings, day: date, out_dir: Path, say: Say) -> Result:
    """Write the day's files and manifest into ``out_dir/<date>/`` and record them."""
    folder = out_dir / day.isoformat()
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    result = Result(day, folder)
    start, end = fmt.window(day, settings.timezone)
    nodes: list[fmt.NodeFile] = []
    current: _Node | None = None
    say(f"{day}: reading the events of {start.isoformat()} to {end.isoformat()}")
    try:
        async with engine.connect() as conn:
            async for row in repo.day_events(conn, start, end):
                if current is None or current.operator != row.operator:
                    if current is not None:
                        node, changed = current.finish(folder)
                        nodes.append(node)
                        if changed:
                            result.written.append(node.name)
                    current = _Node(folder, row.operator, row.kind, row.region)
                envelope = orjson.loads(row.envelope)
                current.write(fmt.line(envelope, row.recorded_at, bytes(row.sha256), settings.timezone))
                result.records += 1
                if result.records % PROGRESS_EVERY == 0:
                    say(f"{day}: {result.records:,} records, {len(nodes) + 1} files")
        if current is not None:
            node, changed = current.finish(folder)
            nodes.append(node)
            if changed:
                result.written.append(node.name)
            current = None
    finally:
        if current is not None:
            current.discard()
    keep = {n.name for n in nodes} | {fmt.MANIFEST}
    for stale in folder.glob("*.ndjson"):
        if stale.name not in keep:
            stale.unlink()
            say(f"{day}: removed {stale.name}, which this day's records no longer have")
    manifest = fmt.manifest(day, settings.timezone, nodes)
    if _put(folder, fmt.MANIFEST, manifest):
        result.written.append(fmt.MANIFEST)
    result.files = len(nodes)
    rows: list[dict[str, Any]] = [
        {
            "name": n.name,
            "operator": n.operator,
            "records": n.records,
            "size_bytes": n.size,
            "sha256": bytes.fromhex(n.sha256),
        }
        for n in nodes
    ]
    rows.append(
        {
            "name": fmt.MANIFEST,
            "operator": None,
            "records": result.records,
            "size_bytes": len(manifest),
            "sha256": hashlib.sha256(manifest).digest(),
        }
    )
    async with unit_of_work(engine) as conn:
        await repo.save_files(conn, day, rows)
    summary = f"{len(result.written)} changed" if result.written else "nothing changed"
    say(f"{day}: {result.files} files, {result.records:,} records in {folder} ({summary})")
    return result


def _headers(settings: Settings, day: date, name: str, data: bytes, records: int) -> dict[str, str]:
    digest = hashlib.sha256(data)
    headers = {
        "Content-Type": "application/json" if name == fmt.MANIFEST else fmt.NDJSON,
        "Idempotency-Key": f"{day.isoformat()}/{name}/{digest.hexdigest()}",
        # RFC 9530: the receiver checks the bytes it got against the manifest's digest without trusting TLS alone.
        "Content-Digest": f"sha-256=:{base64.b64encode(digest.digest()).decode()}:",
        "X-Report-Date": day.isoformat(),
        "X-Report-Records": str(records),
        "User-Agent": f"trace-service/{__version__} (report)",
    }
    token = settings.report_token.get_secret_value()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def push(
    engine: AsyncEngine, settings: Settings, result: Result, say: Say, *, attempts: int = 3, pause: float = 1.0
) -> Result:
    """Push what the receiver does not have yet: the files in name order, then the manifest."""
    url = (settings.report_url or "").rstrip("/")
    if not url:
        return result
    day = result.day
    async with engine.connect() as conn:
        state = await repo.files(conn, day)
    todo = sorted(
        (name for name, f in state.items() if name != fmt.MANIFEST and f["pushed_sha256"] != f["sha256"]),
    )
    manifest_row = state.get(fmt.MANIFEST)
    manifest_due = manifest_row is not None and manifest_row["pushed_sha256"] != manifest_row["sha256"]
    if not todo and not manifest_due:
        say(f"{day}: the receiver has every file already; nothing to push")
        return result
    say(f"{day}: pushing {len(todo)} files{' and the manifest' if manifest_due else ''} to {url}")
    sequence = [*todo, *([fmt.MANIFEST] if manifest_due else [])]
    async with httpx.AsyncClient(timeout=settings.report_timeout_seconds, follow_redirects=False) as client:
        for i, name in enumerate(sequence):
            row = state[name]
            data = await asyncio.to_thread((result.folder / name).read_bytes)
            if hashlib.sha256(data).digest() != bytes(row["sha256"]):
                result.error = f"{name} changed on disk since it was written; run the report again"
                result.unpushed.extend(sequence[i:])
                break
            headers = _headers(settings, day, name, data, row["records"])
            error = await _post(client, f"{url}/{day.isoformat()}/{name}", data, headers, attempts, pause)
            async with unit_of_work(engine) as conn:
                if error is None:
                    await repo.pushed(conn, day, name, bytes(row["sha256"]))
                else:
                    await repo.push_failed(conn, day, name, error)
            if error is not None:
                result.error = f"{name}: {error}"
                result.unpushed.extend(sequence[i:])
                say(f"{day}: pushing {name} failed ({error}); run the report again to resume from it")
                break
            result.pushed.append(name)
            say(f"{day}: pushed {name} ({len(result.pushed)}/{len(sequence)})")
    return result


async def _post(
    client: httpx.AsyncClient, url: str, data: bytes, headers: dict[str, str], attempts: int, pause: float
) -> str | None:
    """POST with a few tries; None on a 2xx, else the last error."""
    error = "not sent"
    for attempt in range(max(1, attempts)):
        if attempt:
            await asyncio.sleep(pause * 2 ** (attempt - 1))
        try:
            response = await client.post(url, content=data, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        if 200 <= response.status_code < 300:
            return None
        error = f"HTTP {response.status_code}"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            break  # the receiver refuses this file: trying again now will not help
    return error


async def run(
    engine: AsyncEngine, settings: Settings, day: date, out_dir: Path, say: Say, *, push_attempts: int = 3
) -> Result:
    result = await write(engine, settings, day, out_dir, say)
    return await push(engine, settings, result, say, attempts=push_attempts)
