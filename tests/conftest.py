"""Fixtures: real Postgres and a real Kafka-protocol broker, found or started once per session.

Services come from ``TRACE_TEST_DATABASE_URL`` / ``TRACE_TEST_KAFKA_BOOTSTRAP`` when set, else from
testcontainers when a Docker engine answers, else the embedded ones (pgserver, Tansu) are started.
Each session gets a fresh database (dropped at the end); each test gets its own topics and group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support import Actors
from trace_service.api.app import create_app
from trace_service.db.engine import migrate
from trace_service.settings import RuleSettings, Settings

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)
PEPPER = secrets.token_hex(16)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _docker_engine() -> bool:
    """Does a Docker engine answer? A raw ping on its socket: the docker client leaks sockets when none does."""
    if os.environ.get("TRACE_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: object = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            name, _, port = host.removeprefix("tcp://").partition(":")
            target = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(target)  # type: ignore[arg-type]
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except OSError:
        return False


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLAlchemy URL of a Postgres server's maintenance database."""
    given = os.environ.get("TRACE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    if _docker_engine():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before 4.14
            from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver="asyncpg") as pg:
            yield pg.get_connection_url()
        return
    from trace_service.runtime.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres.start(tmp_path_factory.mktemp("pg"))
    try:
        yield pg.admin_url
    finally:
        pg.stop()


def _asyncpg_args(url: str) -> dict[str, object]:
    u = make_url(url)
    args: dict[str, object] = {"user": u.username or "postgres", "database": u.database or "postgres"}
    if u.password:
        args["password"] = u.password
    host = u.query.get("host") or u.host or "127.0.0.1"
    args["host"] = host if isinstance(host, str) else host[0]
    if u.port:
        args["port"] = u.port
    return args


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    name = f"trace_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(**_asyncpg_args(server_url))  # type: ignore[arg-type]
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).set(drivername="postgresql+asyncpg")
    rendered = url.render_as_string(hide_password=False)
    await asyncio.to_thread(migrate, rendered)
    yield rendered
    admin = await asyncpg.connect(**_asyncpg_args(server_url))  # type: ignore[arg-type]
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def broker_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("TRACE_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_engine():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers before 4.14
            from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from trace_service.runtime.embedded import EmbeddedBroker

    broker = EmbeddedBroker.start(log_file=tmp_path_factory.mktemp("broker") / "tansu.log")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the session database, for checking what was stored."""
    u = make_url(database_url)
    conn = await asyncpg.connect(**_asyncpg_args(u.render_as_string(hide_password=False)))  # type: ignore[arg-type]
    try:
        yield conn
    finally:
        await conn.close()


def make_settings(database_url: str, bootstrap: str, **over: object) -> Settings:
    tag = secrets.token_hex(4)
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka_bootstrap": bootstrap,
        "topic_events": f"test.{tag}.events",
        "topic_dlq": f"test.{tag}.events.dlq",
        "topic_alerts": f"test.{tag}.alerts",
        "consumer_group": f"test-{tag}",
        "admin_token": ADMIN_TOKEN,
        "key_pepper": PEPPER,
        "worker_session_timeout_ms": 2000,
        "worker_heartbeat_interval_ms": 500,
        "worker_poll_timeout_ms": 100,
        "produce_timeout_seconds": 5.0,
        "db_pool_size": 5,
        "log_format": "console",
        "log_level": "warning",
        # Absence rules wait 2 s for late reports; unresolved lots alert after 3 s; the tick runs often.
        "rules": RuleSettings(settle_seconds=2.0, grace_seconds=3, tick_seconds=0.2),
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, broker_bootstrap: str) -> Settings:
    return make_settings(database_url, broker_bootstrap)


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://trace.test", timeout=30) as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings) as c:
        yield c


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    from trace_service.worker.main import run_worker

    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, ready))
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(ready.wait())}, timeout=20, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()  # raises what stopped it
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[None]:
    async with running_worker(settings):
        yield


@pytest.fixture
def actors(client: httpx.AsyncClient) -> Actors:
    return Actors(client, ADMIN_TOKEN)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
