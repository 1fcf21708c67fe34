"""The embedded broker and database used by `trace-service dev` and by tests on a bare machine."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from trace_service.runtime.embedded import (
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    find_free_port,
    tansu_binary,
    wait_for_port,
)


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    """A data directory outside pytest's tmp_path.

    As root, PostgreSQL runs as the `pgserver` user, which must traverse every parent of the data dir;
    pytest resets /tmp/pytest-of-<user> to 0700 at each session start, so a concurrent pytest run would
    lock the server out of a tmp_path data dir.
    """
    path = Path(tempfile.mkdtemp(prefix="trace-embedded-pg-"))
    path.chmod(0o755)
    yield path / "pg"
    shutil.rmtree(path, ignore_errors=True)


def test_tansu_binary_is_executable() -> None:
    path = tansu_binary()
    assert path.is_file()
    assert path.stat().st_mode & 0o111


async def test_broker_round_trip_then_kill(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    broker = EmbeddedBroker.start(log_file=log)
    try:
        assert broker.is_running()
        host, _, port = broker.bootstrap.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) == broker.port
        wait_for_port(host, broker.port, timeout=1)

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait("embedded-test", b"hello", key=b"k1")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition("embedded-test", meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            record = await consumer.getone()
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k1", b"hello")

        broker.kill()
        assert not broker.is_running()
        assert _port_closed(broker.port)
    finally:
        broker.stop()
    assert log.exists()  # a caller-supplied log is kept


def test_broker_context_manager_and_busy_port() -> None:
    with EmbeddedBroker.start() as broker:
        with pytest.raises(EmbeddedError, match="already in use"):
            EmbeddedBroker.start(port=broker.port)
        log = broker.log_file
    assert not broker.is_running()
    assert _port_closed(broker.port)
    assert not log.exists()  # the temporary log goes with the broker


def test_wait_for_port_times_out() -> None:
    with pytest.raises(EmbeddedError, match="did not accept"):
        wait_for_port("127.0.0.1", find_free_port(), timeout=0.1)


async def test_postgres_keeps_data_between_runs(pg_data_dir: Path) -> None:
    data_dir = pg_data_dir
    with EmbeddedPostgres.start(data_dir) as pg:
        assert pg.is_running()
        assert pg.url == f"postgresql+asyncpg://postgres:@/trace?host={pg.socket_dir}"
        assert pg.admin_url.startswith("postgresql+asyncpg://postgres:@/postgres?host=")
        conn = await asyncpg.connect(host=str(pg.socket_dir), user="postgres", database="trace")
        try:
            await conn.execute("CREATE TABLE lot (code text PRIMARY KEY, kg numeric NOT NULL)")
            await conn.execute("INSERT INTO lot VALUES ('L-001', 12.5)")
        finally:
            await conn.close()
    assert not pg.is_running()

    with EmbeddedPostgres.start(data_dir) as again:
        conn = await asyncpg.connect(again.dsn)
        try:
            rows = await conn.fetch("SELECT code, kg FROM lot")
        finally:
            await conn.close()
    assert [(r["code"], float(r["kg"])) for r in rows] == [("L-001", 12.5)]
