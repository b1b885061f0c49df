"""Processes of the stack: start one in its own session with a log, find what runs below it, stop it all.

Plain /proc reading and signals; what the parts are and in which order they stop is in ``up.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ..., starttime at 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int, start: str | None = None) -> bool:
    """The process exists, is not a zombie, and (when `start` is given) is the one started then."""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in ("Z", "X") and (start is None or fields[19] == start)


def start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def _all_procs() -> dict[int, list[str]]:
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X"):
                procs[int(entry.name)] = fields
    return procs


def members(pid: int, leader: bool = True) -> set[int]:
    """Processes of the part started as `pid`: its process group, its session and every descendant of
    those (the runner starts flow runs in sessions of their own). `leader`: `pid` itself is still ours
    (False when it died and the number may have been reused)."""
    procs = _all_procs()
    found = {p for p, f in procs.items() if int(f[2]) == pid or int(f[3]) == pid}
    if leader and pid in procs:
        found.add(pid)
    children: dict[int, list[int]] = {}
    for p, f in procs.items():
        children.setdefault(int(f[1]), []).append(p)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _signal(pids: set[int], sig: int, group: int | None = None) -> None:
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_part(part: dict, grace_s: float = 15.0) -> list[int]:
    """SIGTERM the part's process group and every process below it; SIGKILL what is left after `grace_s`.
    Returns the pids still alive at the end (empty when all stopped)."""
    pid = part["pid"]
    leader = alive(pid, part.get("start"))
    targets = members(pid, leader)
    _signal(targets, signal.SIGTERM, group=pid if leader else None)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in targets):
        time.sleep(0.2)
    left = {p for p in targets if alive(p)}
    if left:
        _signal(left, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in left):
            time.sleep(0.1)
    return sorted(p for p in targets if alive(p))


def launch(name: str, cmd: list[str], env: dict, state: Path) -> tuple[subprocess.Popen, dict]:
    log = state / f"{name}.log"
    handle = open(log, "ab")
    handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
    handle.flush()
    proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=os.getcwd())
    handle.close()
    return proc, {"pid": proc.pid, "pgid": proc.pid, "start": start_time(proc.pid), "cmd": cmd, "log": str(log)}
