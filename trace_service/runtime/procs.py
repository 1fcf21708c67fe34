"""Finding the processes of a running ``trace-service dev`` through ``/proc`` (Linux), for the fault tests and
the soak that SIGKILL them one at a time. Only pids found as children of a known parent (or in a known
``postmaster.pid``) are ever named: never a pattern match over the whole machine, which other services share.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

# What each child of `dev` has on its command line.
DEV_CHILDREN = {"worker": "trace_service.cli worker", "api": "trace_service.cli api", "broker": "tansu broker"}


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running: present and neither a zombie nor dead (a killed daemon stays a zombie until it is reaped)."""
    state = proc_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def child(parent: int, role: str) -> int | None:
    """The live child of ``parent`` whose command line names ``role`` (a key of :data:`DEV_CHILDREN`)."""
    needle = DEV_CHILDREN[role]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        state = proc_state(pid)
        if state is None or state[1] != parent or state[0] in ("Z", "X"):
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return pid
    return None


def postmaster(pgdata: Path) -> tuple[int, Path] | None:
    """The pid and socket directory of the PostgreSQL server of ``pgdata``, from its ``postmaster.pid``."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), Path(lines[4])
    return None
