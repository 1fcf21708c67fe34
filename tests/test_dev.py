"""``trace-service dev`` on a clean data folder: ready, refuses a second one, applies events, keeps them across a
restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from trace_service.runtime.embedded import find_free_port


def _request(method: str, url: str, token: str | None = None, body: object = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:  # noqa: S310
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _run_dev(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    """A dev expected to refuse to start: it must exit on its own, quickly."""
    return subprocess.run(
        [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=_clean_env(), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _wait_ready(proc: subprocess.Popen[bytes], port: int, data_dir: Path | None = None, timeout: float = 90) -> None:
    """Until the API answers ready and, given its data folder, dev has announced it (``<data-dir>/url``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            status, _ = _request("GET", f"http://127.0.0.1:{port}/readyz")
            if status == 200 and (data_dir is None or (data_dir / "url").exists()):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("trace-service dev did not become ready")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # a second signal (an impatient Ctrl-C) must not break the orderly stop
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dev_starts_from_nothing_and_keeps_data_across_restarts() -> None:
    # pgserver runs PostgreSQL as its own system user, which must reach the folder: not pytest's 0700 tmp.
    data_dir = Path(tempfile.mkdtemp(prefix="trace-dev-")) / "data"
    port = find_free_port()
    try:
        proc = _start(data_dir, port)
        try:
            _wait_ready(proc, port, data_dir)
            token = (data_dir / "admin-token").read_text().strip()
            base = f"http://127.0.0.1:{port}"
            assert (data_dir / "url").read_text().strip() == base

            # A second dev on the folder in use stops before it touches anything, naming the first; so does one
            # on another folder whose port is taken. The first keeps serving (the rest of the test uses it).
            second = _run_dev(data_dir, find_free_port())
            assert second.returncode == 1, second.stderr
            assert f"in use by another `trace-service dev` (pid {proc.pid}, running since " in second.stderr
            assert "PostgreSQL" not in second.stderr
            assert "broker" not in second.stderr
            other = data_dir.parent / "other"
            third = _run_dev(other, port)
            assert third.returncode == 1, third.stderr
            assert f"port {port} on 127.0.0.1 is taken" in third.stderr
            assert not (other / "postgres").exists()
            assert proc.poll() is None
            assert _request("GET", f"{base}/readyz")[0] == 200
            op = "DEV" + uuid.uuid4().hex[:9].upper()
            status, _ = _request(
                "POST",
                f"{base}/v1/operators",
                token,
                {"code": op, "name": "测试基地", "kind": "planting_base", "region": "442000"},
            )
            assert status == 201
            event = {
                "event_id": str(uuid.uuid4()),
                "event_type": "lot.tested",
                "occurred_at": "2026-11-25T03:40:00+08:00",
                "operator": op,
                "data": {"lot": "DEVLOT0001", "test": "pesticide_rapid", "method": "enzyme", "result": "pass"},
            }
            status, body = _request("POST", f"{base}/v1/events?wait=true", token, event)
            assert status == 200, body
            assert body["events"][0]["status"] == "applied"

            # `replay` run with this data folder finds the service and its token there (the README's worked
            # example, every command of it, is tests/test_readme.py's).
            replay = subprocess.run(
                [sys.executable, "-m", "trace_service.cli", "replay", "pig_chain", "--data-dir", str(data_dir)],
                capture_output=True, text=True, check=False, timeout=60, env=_clean_env(),
            )  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            summary = json.loads(replay.stdout.splitlines()[-1])
            assert summary["applied"] == summary["events"] == 10
        finally:
            out = _stop(proc)
        assert "admin token:" in out
        assert "stopped" in out
        assert not (data_dir / "url").exists()

        # Second run on the same folder: same token, the event is still there.
        proc = _start(data_dir, port)
        try:
            _wait_ready(proc, port)
            status, body = _request("GET", f"http://127.0.0.1:{port}/v1/events/{event['event_id']}", token)
            assert status == 200, body
            assert body["status"] == "applied"
        finally:
            _stop(proc)
        leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True, check=False)
        assert leftover.stdout.strip() == "", "a child process outlived trace-service dev"
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
