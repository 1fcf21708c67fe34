"""``trace-service dev``: the whole service on one machine with nothing installed by hand.

Starts (unless ``TRACE_DATABASE_URL`` / ``TRACE_KAFKA_BOOTSTRAP`` point elsewhere) an embedded
PostgreSQL with its data in ``<data-dir>/postgres`` and an embedded in-memory Kafka-protocol broker,
migrates, then runs the API, the worker(s) and the deliverer as child processes, and supervises them until
Ctrl-C or SIGTERM:

* a worker or the API that dies is started again, with a backoff that grows while it keeps dying;
* a broker that dies is started again on the same port. It comes back as a new, empty cluster, so the
  topics are created again and the workers restarted to join it afresh; the accepted events it forgot
  are in the intake ledger, and the workers' redeliverer produces them again;
* an embedded PostgreSQL that dies is started again (crash recovery); an external one is waited for,
  the children retrying meanwhile.

On Ctrl-C or SIGTERM it stops the API, lets the worker apply what the broker still holds (the broker
keeps nothing on disk), stops the worker, the broker and Postgres, in that order. If ``dev`` itself is
killed, its children stop on their parent-death signal, the embedded PostgreSQL daemon keeps running, and
the next ``dev`` on the same data folder adopts it and produces again what the old broker forgot. Only one
``dev`` runs on a data folder at a time (``<data-dir>/dev.lock`` names it), and none starts on a port in use:
a second one is refused before it touches Postgres, the broker or the port. While it serves,
``<data-dir>/url`` holds its address for ``replay`` and ``simulate``.

With ``demo``, once the service is ready it runs ``trace-service simulate`` (a week of a small city with a
few faults, through the API) as a child process in the background; ``<data-dir>/demo-truth.json`` holds
what was injected, and a demo already loaded into this data folder is not loaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from aiokafka.errors import KafkaError

from trace_service.db.engine import migrate
from trace_service.kafka import ensure_topics
from trace_service.runtime.embedded import EmbeddedBroker, EmbeddedError, EmbeddedPostgres, _parent_death_signal
from trace_service.runtime.replay import DATABASE_FILE, URL_FILE
from trace_service.settings import Settings

DRAIN_SECONDS = 15.0
DEMO = ["simulate", "--days", "7", "--scale", "small", "--seed", "1", "--anomalies", "0.01"]
# Restart backoff: the first restart after a second, doubling while the process keeps dying soon after it
# started (a crash loop: a port taken, a broken install), back to the first step once it stayed up a while.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0
POLL_SECONDS = 0.5


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


class DataDirInUse(RuntimeError):
    pass


class PortInUse(RuntimeError):
    pass


def _lock_data_dir(data_dir: Path) -> int:
    """Hold ``<data-dir>/dev.lock`` for the life of this process (the kernel drops it when we die).

    A second ``dev`` on the same folder would fight the first over the Postgres daemon, the port and the
    ledger; it is refused instead, before it touches any of them. The file names the holder (pid and start
    time). The descriptor is not inherited by the children (Python opens it close-on-exec), so a killed
    ``dev`` never leaves the folder locked.
    """
    path = data_dir / "dev.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, _, since = os.read(fd, 128).decode(errors="replace").strip().partition(" ")
        os.close(fd)
        holder = f"pid {pid or 'unknown'}" + (f", running since {since}" if since else "")
        raise DataDirInUse(
            f"{data_dir} is in use by another `trace-service dev` ({holder}; see {path}). Stop that one first "
            f"(Ctrl-C in its terminal, or kill -TERM {pid or '<pid>'}) or give this one another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    os.write(fd, f"{os.getpid()} {since}\n".encode())
    return fd


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before anything is started.

    Otherwise the API child fails to bind and keeps being restarted while the other server answers the
    readiness probe, which would make this ``dev`` announce a false "ready".
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} on {host} is taken ({exc.strerror}): another service, or a `trace-service dev` "
                "on another data folder, listens there. Stop it or pass --port"
            ) from None


class _Backoff:
    """When a failed thing may be tried again."""

    def __init__(self) -> None:
        self.delay = RESTART_FIRST_SECONDS
        self.due = 0.0

    def failed(self, now: float) -> float:
        wait = self.delay
        self.due = now + wait
        self.delay = min(self.delay * 2, RESTART_MAX_SECONDS)
        return wait

    def reset(self) -> None:
        self.delay = RESTART_FIRST_SECONDS
        self.due = 0.0


class _Child:
    """A child process of the service (API or worker) that is started again when it dies."""

    def __init__(self, name: str, argv: list[str], spawn: dict[str, Any]) -> None:
        self.name = name
        self.argv = argv
        self.spawn = spawn
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.backoff = _Backoff()
        self.held = False  # stopped on purpose (the broker is being replaced): not restarted meanwhile

    def start(self) -> None:
        self.held = False
        self.proc = subprocess.Popen(self.argv, **self.spawn)  # noqa: S603 - our own interpreter and module
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def supervise(self, now: float) -> None:
        if self.held:
            return
        if self.proc is None:
            if now >= self.backoff.due:
                _say(f"starting the {self.name} again")
                self.start()
            return
        code = self.proc.poll()
        if code is None:
            if now - self.started_at >= STABLE_SECONDS:
                self.backoff.reset()
            return
        self.proc = None
        wait = self.backoff.failed(now)
        _say(f"the {self.name} exited (code {code}); starting it again in {wait:.0f} s")

    def stop(self, timeout: float = 20.0) -> None:
        self.held = True
        if self.proc is not None:
            _terminate(self.proc, self.name, timeout)
        self.proc = None


def _api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:  # noqa: S310 - our own local URL
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _drain(database_url: str, timeout: float) -> int:
    """Wait until every event the API accepted has been applied or rejected; how many are still waiting."""
    from trace_service.db.engine import create_engine
    from trace_service.ingest import repository as ledger

    async def pending() -> int:
        engine = create_engine(Settings(database_url=database_url), pool_size=1)
        try:
            deadline = time.monotonic() + timeout
            while True:
                async with engine.connect() as conn:
                    left = await ledger.pending_count(conn)
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
        _say(f"the {name} did not stop in {timeout:.0f} s; killing it")
        child.kill()
        child.wait()


class _Supervisor:
    """Keeps the embedded servers and the children running (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        postgres: EmbeddedPostgres | None,
        broker: EmbeddedBroker | None,
        children: list[_Child],
        workers: list[_Child],
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.postgres = postgres
        self.broker = broker
        self.children = children
        self.workers = workers
        self._postgres_backoff = _Backoff()
        self._postgres_down_since: float | None = None
        self._broker_backoff = _Backoff()
        self._broker_down_since: float | None = None

    def tick(self) -> None:
        now = time.monotonic()
        self._keep_postgres(now)
        self._keep_broker(now)
        for child in self.children:
            child.supervise(now)

    def _keep_postgres(self, now: float) -> None:
        pg = self.postgres
        if pg is None or pg.is_running():
            return
        if self._postgres_down_since is None:
            self._postgres_down_since = now
            _say(f"PostgreSQL (pid {pg.pid}) died; starting it again (the API answers 503 meanwhile)")
        if now < self._postgres_backoff.due:
            return
        try:
            self.postgres = pg.revive()
        except EmbeddedError as exc:
            wait = self._postgres_backoff.failed(now)
            _say(f"PostgreSQL did not start yet ({str(exc).splitlines()[0][:200]}); trying again in {wait:.0f} s")
            return
        _say(f"PostgreSQL is back (pid {self.postgres.pid}) after {time.monotonic() - self._postgres_down_since:.1f} s")
        self._postgres_down_since = None
        self._postgres_backoff.reset()

    def _keep_broker(self, now: float) -> None:
        broker = self.broker
        if broker is None or broker.is_running():
            return
        if self._broker_down_since is None:
            self._broker_down_since = now
            _say(
                f"the broker (pid {broker.pid}) died; starting a new one on port {broker.port} "
                "(empty: events it had not delivered are produced again from the intake ledger)"
            )
            # The workers' groups and offsets lived in the old broker: they rejoin the new one afresh.
            for w in self.workers:
                w.stop(timeout=3.0)  # a worker whose broker is gone may not get out of its client: kill it
            broker.stop()  # reaps it
        if now < self._broker_backoff.due:
            return
        try:
            fresh = EmbeddedBroker.start(port=broker.port, log_file=self.data_dir / "broker.log")
        except EmbeddedError as exc:
            wait = self._broker_backoff.failed(now)
            _say(f"the broker did not start ({str(exc).splitlines()[0][:200]}); trying again in {wait:.0f} s")
            return
        try:
            # Before anything else touches it: a produce or a subscription would auto-create the topics with
            # the broker's default partition count.
            asyncio.run(ensure_topics(self.settings))
        except (KafkaError, OSError, TimeoutError) as exc:
            _say(f"could not create the topics on the new broker ({type(exc).__name__}: {exc}); restarting it")
            fresh.stop()
            self.broker = fresh
            self._broker_backoff.failed(now)
            return
        self.broker = fresh
        for w in self.workers:
            w.start()
        down = time.monotonic() - self._broker_down_since
        _say(f"the broker is back (pid {fresh.pid}) after {down:.1f} s; workers restarted")
        self._broker_down_since = None
        self._broker_backoff.reset()


def run_dev(*, host: str, port: int, data_dir: Path, workers: int = 1, demo: bool = False) -> int:
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = _lock_data_dir(data_dir)
    except DataDirInUse as exc:
        _say(str(exc))
        return 1
    try:
        _check_port_free(host, port)
    except PortInUse as exc:
        os.close(lock)
        _say(str(exc))
        return 1
    env = dict(os.environ)
    env.setdefault("TRACE_LOG_FORMAT", "console")

    handler = _StopOnce()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor: _Supervisor | None = None
    api: _Child | None = None
    worker_children: list[_Child] = []
    deliverer: _Child | None = None
    demo_proc: subprocess.Popen[bytes] | None = None
    demo_done = data_dir / "demo-loaded"
    code = 0
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    try:
        if "TRACE_DATABASE_URL" not in os.environ:
            _say(f"starting embedded PostgreSQL in {data_dir / 'postgres'}")
            # Adopts the server a killed `dev` left running on this folder.
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

        # QR codes and redirects name the address this dev serves on, unless a public one is configured.
        local_host = host if host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        env.setdefault("TRACE_PUBLIC_BASE_URL", f"http://{local_host}:{port}")

        settings = Settings(database_url=env["TRACE_DATABASE_URL"], kafka_bootstrap=env["TRACE_KAFKA_BOOTSTRAP"])
        _say("migrating the database")
        migrate(settings.database_url)
        asyncio.run(ensure_topics(settings))

        command = [sys.executable, "-m", "trace_service.cli"]
        # Children get their own session so that a Ctrl-C reaches only this supervisor, which stops
        # them in order; the parent-death signal stops them if the supervisor is killed outright.
        spawn = {"env": env, "start_new_session": True, "preexec_fn": _parent_death_signal()}
        worker_children = [
            _Child("worker" if workers == 1 else f"worker {i + 1}", [*command, "worker"], spawn) for i in range(workers)
        ]
        api = _Child("API", [*command, "api", "--host", host, "--port", str(port)], spawn)
        # Sends the shared stream to the webhook subscriptions; it needs Postgres only, not the broker.
        deliverer = _Child("deliverer", [*command, "deliver"], spawn)
        children = [*worker_children, api, deliverer]
        supervisor = _Supervisor(settings, data_dir, postgres, broker, children, worker_children)
        for child in supervisor.children:
            child.start()
        url = f"http://{local_host}:{port}"
        announced = False
        while True:
            supervisor.tick()
            if not announced and api.alive() and _api_ready(url):
                announced = True
                # `replay` and `simulate` run from this folder find the service here.
                (data_dir / URL_FILE).write_text(url + "\n")
                if postgres is not None:  # `report` run from this folder reads the embedded database
                    (data_dir / DATABASE_FILE).write_text(postgres.url + "\n")
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
            if demo_proc is not None and demo_proc.poll() is not None:
                if demo_proc.returncode == 0:
                    demo_done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
                    _say("the demo week is loaded")
                else:
                    _say(f"loading the demo week failed (exit code {demo_proc.returncode})")
                demo_proc = None
            time.sleep(POLL_SECONDS)
    except _Stop:
        pass
    except Exception as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        handler.stopping = True  # further signals must not interrupt the orderly stop below
        _say("stopping")
        if supervisor is not None:
            postgres, broker = supervisor.postgres, supervisor.broker
        if demo_proc is not None:
            _terminate(demo_proc, "demo loader", timeout=5.0)
        if api is not None:
            api.stop()
        if worker_children and all(w.alive() for w in worker_children) and "TRACE_DATABASE_URL" in env:
            try:
                left = _drain(env["TRACE_DATABASE_URL"], DRAIN_SECONDS)
                if left:
                    _say(
                        f"{left} accepted events were not applied before stopping; they stay in the intake "
                        "ledger and the next `dev` on this folder produces them again"
                    )
            except Exception as exc:
                _say(f"could not check for unapplied events: {exc}")
        for w in worker_children:
            w.stop()
        if deliverer is not None:
            deliverer.stop()  # after the workers: what they applied last is still sent
        if broker is not None:
            broker.stop()
        if postgres is not None:
            with contextlib.suppress(EmbeddedError):  # it may have died in the last half second
                postgres.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
        for name in (URL_FILE, DATABASE_FILE):
            with contextlib.suppress(FileNotFoundError):
                (data_dir / name).unlink()
        os.close(lock)
        _say("stopped")
    return code
