"""What every benchmark here needs: child processes of the service, fresh databases, the embedded broker's
topics, CPU and memory readings off ``/proc``, percentiles, and the commit measured.

Nothing here measures anything by itself; the runners (``bench/run.py`` and the per-issue runners) do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from trace_service.access import keys
from trace_service.contract import signing
from trace_service.runtime.embedded import find_free_port

RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"
# Every service process of a bench run signs and checks with this master (TRACE_SIGNING_SECRET), so that the
# messages the benches produce straight to the topic carry a valid mark of the API (see produce).
SIGNING_SECRET = secrets.token_hex(32)


# -- figures -------------------------------------------------------------------------------------------------


def pct(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values) if values else float("nan"),
        "p90": pct(values, 0.90),
        "p99": pct(values, 0.99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- /proc -----------------------------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu(dbname: str) -> float:
    """CPU seconds used so far by the Postgres backends connected to this database (as long as they live)."""
    total = 0.0
    needle = f" {dbname} ".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if cmdline.startswith(b"postgres: ") and needle in cmdline:
                total += proc_cpu(int(proc.name))
        except (OSError, ValueError):
            continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]) - idle, sum(parts[:8])


class CpuMeter:
    """Cores used by each process (and the database's backends) between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int], dbname: str | None = None) -> None:
        self.pids = pids
        self.dbname = dbname
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}
        self._busy0 = (0.0, 0.0)

    def _read(self) -> dict[str, float]:
        out = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        if self.dbname:
            out["postgres"] = postgres_cpu(self.dbname)
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = self._read()
        self._busy0 = machine_busy()

    def stop(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self._t0)
        now = self._read()
        busy, total = machine_busy()
        cores = {f"{name}_cores": (now[name] - self._cpu0.get(name, 0.0)) / wall for name in now}
        ours = sum(cores.values())
        machine = (busy - self._busy0[0]) / max(1.0, total - self._busy0[1])
        cores["machine_busy"] = machine
        # Whatever else ran on the machine meanwhile (other sessions, the kernel): the benchmark's noise.
        cores["other_cores"] = machine * (os.cpu_count() or 1) - ours
        return cores


# -- child processes -------------------------------------------------------------------------------------------


def service_env(database_url: str, bootstrap: str, **extra: str) -> dict[str, str]:
    """The environment of a service process: this one's, without any ``TRACE_*`` of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env.update(
        {
            "TRACE_DATABASE_URL": database_url,
            "TRACE_KAFKA_BOOTSTRAP": bootstrap,
            "TRACE_KEY_PEPPER": secrets.token_hex(16),
            "TRACE_SIGNING_SECRET": SIGNING_SECRET,
            "TRACE_LOG_LEVEL": "warning",
        }
    )
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``trace-service <args>`` as a child process, its output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "trace_service.cli", *args], env=env, stdout=handle, stderr=handle)


def spawn_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``trace-service api`` on a free port as a child process; the process and its base URL."""
    port = find_free_port()
    return spawn(["api", "--port", str(port)], env, log), f"http://127.0.0.1:{port}"


async def wait_ready(
    base: str, path: str = "/readyz", timeout: float = 30.0, procs: Iterable[subprocess.Popen[bytes]] = ()
) -> None:
    """Poll ``GET base + path`` until it answers 200. Fails when one of ``procs`` exits meanwhile, or at
    ``timeout``."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(path)).status_code == 200:
                    return
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a service process exited with {p.returncode} before {path} answered 200")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base}{path} did not answer 200 within {timeout:.0f} s")
            await asyncio.sleep(0.1)


def stop(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (the service finishes its batch), then SIGKILL after 20 s."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def py_spy(pid: int, seconds: int, out: Path, fmt: str = "flamegraph") -> subprocess.Popen[bytes] | None:
    """Record ``pid`` with py-spy (``flamegraph`` SVG, or ``raw`` collapsed stacks) until ``stop_spy``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print(f"py-spy not found ({exe}); pip install py-spy", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "record", "-d", str(seconds), "-r", "50", "-p", str(pid), "-o", str(out), "-f", fmt, "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(out.with_suffix(".log")).open("wb"))


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """py-spy writes its output when interrupted (SIGINT), not when terminated."""
    if spy is None:
        return
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()


# -- databases -------------------------------------------------------------------------------------------------


async def create_db(dsn: str, prefix: str) -> str:
    """A fresh database on the server at ``dsn`` (no database name); its name."""
    name = f"{prefix}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(dsn + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_db(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(dsn + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def count_events(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events"))


async def wait_events(
    conn: asyncpg.Connection,
    target: int,
    timeout: float,
    interval: float = 0.05,
    procs: Iterable[subprocess.Popen[bytes]] = (),
) -> float:
    """Wait until the events table holds ``target`` rows; the monotonic time it did. Fails when one of
    ``procs`` exits meanwhile."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await count_events(conn) >= target:
            return time.monotonic()
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a service process exited with {p.returncode} before the events were applied")
        await asyncio.sleep(interval)
    raise RuntimeError(f"only {await count_events(conn)} of {target} events applied within {timeout:.0f} s")


# -- the broker ------------------------------------------------------------------------------------------------


@functools.cache
def _api_secret() -> bytes:
    master = keys.signing_master(SIGNING_SECRET, "")
    assert master is not None
    return keys.api_signing_secret(master)


def api_headers(key: bytes, value: bytes) -> list[tuple[str, bytes]]:
    """The mark the API puts on a message it produced for a regulator (contract section 8), made with the
    bench's signing secret: messages the benches put in the topic themselves stand for what the API produced."""
    return signing.sign_headers(signing.API_KEY_ID, _api_secret(), key, value, actor=signing.STAFF_ACTOR)


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], linger_ms: int = 10) -> float:
    """Produce keyed messages as fast as aiokafka goes (acks=all, large batches); the seconds it took.

    Each carries the API's mark (``api_headers``), signed before the clock starts: signing is the API's cost.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms, max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )  # fmt: skip
    marked = [(k, v, api_headers(k, v)) for k, v in messages]
    await producer.start()
    try:
        t0 = time.monotonic()
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in marked]
        await asyncio.gather(*futures)
        return time.monotonic() - t0
    finally:
        await producer.stop()


# -- provenance --------------------------------------------------------------------------------------------------


def code_version(tree: bool = False) -> dict[str, Any]:
    """The commit measured, and the files of the package that differ from it; with ``tree``, also the hash of
    the package's tree in that commit (it changes only when a commit touches ``trace_service/``)."""
    git = shutil.which("git")
    root = Path(__file__).resolve().parents[1]
    if git is None:
        return {}

    def out(*cmd: str) -> str:
        return subprocess.run([git, *cmd], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        head = out("rev-parse", "--short", "HEAD").strip()
        changed = [line[3:] for line in out("status", "--porcelain", "trace_service").splitlines()]
        diff = hashlib.sha256(out("diff", "HEAD", "--", "trace_service").encode()).hexdigest()[:12]
        package = out("rev-parse", "--short", "HEAD:trace_service").strip() if tree else None
    except (OSError, subprocess.CalledProcessError):
        return {}
    if package is None:
        return {"commit": head, "changed": changed, "diff_sha256": diff}
    return {"commit": head, "tree": package, "changed": changed, "diff_sha256": diff}


@contextlib.contextmanager
def timed(into: dict[str, float], key: str) -> Any:
    t0 = time.monotonic()
    try:
        yield
    finally:
        into[key] = time.monotonic() - t0


def write_result(name: str, payload: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write a runner's result as JSON to ``out`` or, without it, to ``bench/results/<name>-<UTC time>.json``;
    the path written."""
    path = Path(out) if out else RESULTS / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    return path


def add_runner_options(parser: argparse.ArgumentParser, name: str) -> None:
    """The options every runner takes: where its JSON goes and which Postgres server it uses."""
    parser.add_argument(
        "--out", metavar="PATH", help=f"write the result JSON to PATH instead of bench/results/{name}-<time>.json"
    )
    parser.add_argument("--database-url", default=DEFAULT_URL, help="server URL, no db (default %(default)s)")
    parser.add_argument("--database-dsn", default=DEFAULT_DSN, help="the same for asyncpg (default %(default)s)")
