"""The README is true: every command in it runs and prints what it says, its tables follow the code.

The slow test starts one ``trace-service dev`` (as a newcomer would, from a folder of their own with the
project's ``.venv`` and ``events/``) and runs every ``sh`` block of the README in order, in one shell, against
it. The ``text`` block after a command block is what it prints: each of its lines must match an output line,
in order, where ``…`` stands for anything. The only change made to the commands is the port of the API.
The blocks it cannot run are listed in :data:`NOT_RUN`, with the reason.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tests.test_dev import _wait_ready
from trace_service.cli import build_parser
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
README_URL = "http://127.0.0.1:8000"

# A fragment of each block the test does not run, and why. Each must match exactly one block.
NOT_RUN = {
    "pip install -e '.[embedded]' && .venv/bin/trace-service dev": "installs the package and starts `dev`: the "
    "fixture starts the same `trace-service dev` from this checkout's .venv and runs every other block against it",
    "pip install -e '.[test]' && .venv/bin/python -m pytest": "the test command itself",
    "docker compose up --build": "no container engine on the test machines; tests/test_deploy.py checks "
    "compose.yaml and the Dockerfile",
    "python -m bench.run --quick": "the benchmarks take minutes; tests/test_bench_run.py runs their sections at "
    "small sizes",
    "simulate --scale city": "posts 157,000 events, which takes minutes; tests/test_simulate.py runs simulate "
    "through the API at the tiny scale",
}
MARK = "@@readme-block@@"


@dataclass(frozen=True)
class Block:
    line: int  # where the block starts in README.md
    text: str
    output: list[str] | None  # the text block that follows it, if any


def shell_blocks(markdown: str) -> list[Block]:
    """The ``sh`` blocks of a Markdown text, each with the ``text`` block right after it."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    i = 0

    def fenced(start: int) -> tuple[list[str], int]:
        end = start + 1
        while lines[end].strip() != "```":
            end += 1
        return lines[start + 1 : end], end + 1

    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        body, i = fenced(i)
        start = i - len(body) - 1
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        output = None
        if j < len(lines) and lines[j].strip() == "```text":
            output, i = fenced(j)
        blocks.append(Block(start, "\n".join(body), output))
    return blocks


def _skipped(block: Block) -> str | None:
    return next((reason for fragment, reason in NOT_RUN.items() if fragment in block.text), None)


def _matches(expected: list[str], got: list[str]) -> str | None:
    """None when every expected line matches an output line, in order (``…`` is a wildcard); else why not."""
    at = 0
    for want in (w for w in expected if w.strip()):
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("…")))
        while at < len(got) and not pattern.fullmatch(got[at]):
            at += 1
        if at == len(got):
            return f"no output line matches {want!r}"
        at += 1
    return None


def test_not_run_names_real_blocks_and_every_run_block_shows_its_output() -> None:
    blocks = shell_blocks(README.read_text(encoding="utf-8"))
    for fragment in NOT_RUN:
        assert sum(fragment in b.text for b in blocks) == 1, f"NOT_RUN entry {fragment!r} matches no single block"
    for block in blocks:
        if _skipped(block) is None:
            assert block.output, f"README.md:{block.line}: a command block without the ```text block it prints"
        assert "127.0.0.1:" not in block.text.replace(README_URL, ""), f"README.md:{block.line}: use {README_URL}"


# -- the commands, against a real dev ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dev:
    url: str
    work: Path  # the newcomer's project folder: .venv and events/ of this checkout, .trace-data of its own
    proc: subprocess.Popen[bytes]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}


@pytest.fixture(scope="module")
def readme_dev() -> Iterator[Dev]:
    # pgserver runs PostgreSQL as its own system user, which must reach the folder: not pytest's 0700 tmp.
    top = Path(tempfile.mkdtemp(prefix="trace-readme-"))
    work = top / "work"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "events").symlink_to(ROOT / "events")
    port = find_free_port()
    log = (top / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trace_service.cli", "dev", "--port", str(port), "--data-dir", ".trace-data"],
        cwd=work,
        env=_clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(proc, port, work / ".trace-data")
        yield Dev(f"http://127.0.0.1:{port}", work, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_readme_command_runs_and_prints_what_the_readme_says(readme_dev: Dev) -> None:
    blocks = [b for b in shell_blocks(README.read_text(encoding="utf-8")) if _skipped(b) is None]
    assert len(blocks) >= 8, "the README lost its worked examples"
    script = ["set -eo pipefail"]
    for n, block in enumerate(blocks):
        script += [f"echo; echo '{MARK}{n}'", f"echo '{MARK}{n}' >&2", block.text.replace(README_URL, readme_dev.url)]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=readme_dev.work,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    parts = done.stdout.split(f"\n{MARK}")[1:]
    outputs = {int(n): rest.splitlines() for n, _, rest in (p.partition("\n") for p in parts)}
    if done.returncode != 0:
        failed = blocks[max(outputs)] if outputs else blocks[0]
        raise AssertionError(
            f"README.md:{failed.line}: the block failed (exit {done.returncode})\n{failed.text}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    for n, block in enumerate(blocks):
        got = [line.lstrip("\ufeff").rstrip() for line in outputs[n] if line.strip()]  # the CSV starts with a BOM
        problem = _matches(block.output or [], got)
        assert problem is None, f"README.md:{block.line}: {problem}\n{block.text}\nprinted:\n" + "\n".join(got)
    assert readme_dev.proc.poll() is None, "dev stopped while the README was followed"


# -- the tables follow the code -----------------------------------------------------------------------------


def test_the_commands_table_has_every_command_and_every_flag() -> None:
    rows = {
        m.group(1): line
        for line in README.read_text(encoding="utf-8").splitlines()
        if (m := re.match(r"\| `trace-service ([a-z-]+)", line))
    }
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert name in rows, f"the README's Commands table has no row for `trace-service {name}`"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    found = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", rows[name])
                    assert found, f"`trace-service {name} {flag}` is not in the README's Commands table"


def _env_names(model: type[BaseSettings], prefix: str) -> Iterator[tuple[str, str]]:
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            yield from _env_names(kind, str(kind.model_config.get("env_prefix", "")))
        else:
            yield name, f"{prefix}{name}".upper()


def test_every_setting_is_documented() -> None:
    documented = README.read_text(encoding="utf-8") + OPERATIONS.read_text(encoding="utf-8")
    missing = [env for _, env in _env_names(Settings, "TRACE_") if f"`{env}`" not in documented]
    assert not missing, f"settings in neither the README nor docs/operations.md's settings table: {missing}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_link_and_picture_of_the_readme_exists() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    assert targets
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.exists(), f"the README links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(file.read_text(encoding="utf-8")), f"{path} has no heading #{anchor}"
