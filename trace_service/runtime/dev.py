"""``trace-service dev``: the whole service on one machine with nothing installed by hand.

Starts (unless ``TRACE_DATABASE_URL`` / ``TRACE_KAFKA_BOOTSTRAP`` point elsewhere) an embedded
PostgreSQL with its data in ``<data-dir>/postgres`` and an embedded in-memory Kafka-protocol broker,
migrates, then runs the API and the worker(s) as child processes. On Ctrl-C or SIGTERM it stops the
API, lets the worker apply what the broker still holds (the broker keeps nothing on disk), stops the
worker, the broker and Postgres, in that order.

With ``demo``, once the service is ready it runs ``trace-service simulate`` (a week of a small city with a
few faults, through the API) as a child process in the background; ``<data-dir>/demo-truth.json`` holds
what was injected, and a demo already loaded into this data folder is not loaded again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker, EmbeddedPostgres, _parent_death_signal

DRAIN_SECONDS = 15.0
DEMO = ["simulate", "--days", "7", "--scale", "small", "--seed", "1", "--anomalies", "0.01"]


def _say(message: str) -> None:
    print(f"[trace-service dev] {message}", file=sys.stderr, flush=True)  # noqa: T201


def _secret_file(path: Path) -> str:
    """A secret kept in the data folder so that keys issued in one run still work in the next."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


class _Stop(Exception):
    pass


class _StopOnce:
    """Signal handler: the first SIGINT/SIGTERM interrupts the main loop; later ones are ignored so
    that they cannot break the orderly stop (``timeout`` or a terminal may send a second one)."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise _Stop


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"a child process exited during start-up (exit code {child.returncode})")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:  # noqa: S310 - our own local URL
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not become ready within {timeout:.0f} s")


def _drain(database_url: str, timeout: float) -> int:
    """Wait until every event the API accepted has been applied (the intake ledger is empty)."""
    import sqlalchemy as sa

    from trace_service.db.engine import create_engine
    from trace_service.settings import Settings

    async def pending() -> int:
        engine = create_engine(Settings(database_url=database_url), pool_size=1)
        try:
            deadline = time.monotonic() + timeout
            while True:
                async with engine.connect() as conn:
                    left = int((await conn.execute(sa.text("SELECT count(*) FROM intake"))).scalar_one())
                if left == 0 or time.monotonic() > deadline:
                    return left
                await asyncio.sleep(0.2)
        finally:
            await engine.dispose()

    return asyncio.run(pending())


def _terminate(child: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        _say(f"{name} did not stop in {timeout:.0f} s; killing it")
        child.kill()
        child.wait()


def run_dev(*, host: str, port: int, data_dir: Path, workers: int = 1, demo: bool = False) -> int:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("TRACE_LOG_FORMAT", "console")

    handler = _StopOnce()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    api: subprocess.Popen[bytes] | None = None
    worker_procs: list[subprocess.Popen[bytes]] = []
    demo_proc: subprocess.Popen[bytes] | None = None
    demo_done = data_dir / "demo-loaded"
    code = 0
    try:
        if "TRACE_DATABASE_URL" not in os.environ:
            _say(f"starting embedded PostgreSQL in {data_dir / 'postgres'}")
            postgres = EmbeddedPostgres.start(data_dir / "postgres")
            env["TRACE_DATABASE_URL"] = postgres.url
        if "TRACE_KAFKA_BOOTSTRAP" not in os.environ:
            broker = EmbeddedBroker.start(log_file=data_dir / "broker.log")
            env["TRACE_KAFKA_BOOTSTRAP"] = broker.bootstrap
            _say(f"started embedded broker at {broker.bootstrap} (in memory)")
        generated_token = "TRACE_ADMIN_TOKEN" not in os.environ
        if generated_token:
            env["TRACE_ADMIN_TOKEN"] = _secret_file(data_dir / "admin-token")
        if "TRACE_KEY_PEPPER" not in os.environ:
            env["TRACE_KEY_PEPPER"] = _secret_file(data_dir / "key-pepper")

        from trace_service.settings import Settings

        settings = Settings(database_url=env["TRACE_DATABASE_URL"], kafka_bootstrap=env["TRACE_KAFKA_BOOTSTRAP"])
        _say("migrating the database")
        migrate(settings.database_url)
        asyncio.run(ensure_topics(settings))

        command = [sys.executable, "-m", "trace_service.cli"]
        # Children get their own session so that a Ctrl-C reaches only this supervisor, which stops
        # them in order; the parent-death signal stops them if the supervisor is killed outright.
        spawn = {"env": env, "start_new_session": True, "preexec_fn": _parent_death_signal()}
        for _ in range(workers):
            worker_procs.append(subprocess.Popen([*command, "worker"], **spawn))  # type: ignore[call-overload]  # noqa: S603
        api = subprocess.Popen([*command, "api", "--host", host, "--port", str(port)], **spawn)  # type: ignore[call-overload]  # noqa: S603
        url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"  # noqa: S104
        _wait_ready(url, [api, *worker_procs])
        _say(f"ready: {url}  (API docs: {url}/docs)")
        if generated_token:
            _say(f"admin token: {env['TRACE_ADMIN_TOKEN']}  (kept in {data_dir / 'admin-token'})")
        if demo and demo_done.exists():
            _say(f"the demo week is already in this data folder ({demo_done} exists)")
        elif demo:
            _say("loading a simulated week in the background (trace-service simulate)")
            # The admin key reaches the loader in its environment, not on its command line.
            loader = [*command, *DEMO, "--url", url, "--bootstrap", env["TRACE_KAFKA_BOOTSTRAP"]]
            loader += ["--truth", str(data_dir / "demo-truth.json")]
            demo_proc = subprocess.Popen(loader, **spawn)  # type: ignore[call-overload]  # noqa: S603
        _say("press Ctrl-C to stop")
        while True:
            for child in [api, *worker_procs]:
                if child.poll() is not None:
                    _say(f"a child process exited (code {child.returncode}); stopping")
                    code = 1
                    raise _Stop
            if demo_proc is not None and demo_proc.poll() is not None:
                if demo_proc.returncode == 0:
                    demo_done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
                    _say("the demo week is loaded")
                else:
                    _say(f"loading the demo week failed (exit code {demo_proc.returncode})")
                demo_proc = None
            time.sleep(0.5)
    except _Stop:
        pass
    except Exception as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        handler.stopping = True  # further signals must not interrupt the orderly stop below
        _say("stopping")
        if demo_proc is not None:
            _terminate(demo_proc, "demo loader", timeout=5.0)
        if api is not None:
            _terminate(api, "API")
        if worker_procs and all(w.poll() is None for w in worker_procs) and "TRACE_DATABASE_URL" in env:
            try:
                left = _drain(env["TRACE_DATABASE_URL"], DRAIN_SECONDS)
                if left:
                    _say(f"{left} accepted events were not applied before stopping; the broker forgets them")
            except Exception as exc:
                _say(f"could not check for unapplied events: {exc}")
        for w in worker_procs:
            _terminate(w, "worker")
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        _say("stopped")
    return code
