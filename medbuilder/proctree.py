"""Processes through psutil: a process's identity (its pid and creation time), whether it still runs, the
processes of a session or process group with everything below them, stopping those, and the processes whose
working folder lies in a folder.

The stack (medbuilder/stack), run recovery (medbuilder/lifecycle/recovery.py) and the sandbox's watchdog
(protocol/tools/sandbox.py) use it. The watchdog keeps its own memory and deleted-file readers: psutil has no
per-process anonymous + shared-memory PSS, and its open_files() leaves deleted files out.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

# psutil's creation time is boot time + the kernel's start ticks; two processes may read boot time a second
# apart, so starts closer than this are the same process (a pid comes back only after the pid counter wraps)
SAME_START_S = 1.0
GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def created(pid: int) -> float | None:
    """When `pid` was created (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def from_ticks(ticks) -> float | None:
    """A creation time from the kernel's start ticks (/proc/<pid>/stat), as records written before psutil hold."""
    try:
        return psutil.boot_time() + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (TypeError, ValueError):
        return None


def recorded_start(record: dict) -> float | None:
    """The creation time a record holds: "created", or the start ticks older records kept."""
    if record.get("created") is not None:
        return float(record["created"])
    return from_ticks(record.get("start_ticks", record.get("start")))


def running(pid: int, since: float | None = None) -> bool:
    """The process exists, is not a zombie, and (when `since` is given) is the one created then."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return proc.status() not in GONE and (since is None or abs(proc.create_time() - since) < SAME_START_S)
    except (psutil.Error, ValueError):
        return False


def _table() -> dict[int, dict]:
    """Every live process: pid -> {"proc", "ppid", "cpu_times"} (one read of each process's stat)."""
    rows = {}
    for proc in psutil.process_iter(["ppid", "status", "cpu_times"]):
        info = proc.info
        if info["status"] not in GONE and info["ppid"] is not None:
            rows[proc.pid] = {**info, "proc": proc}
    return rows


def _led_by(root: int, pid: int) -> bool:
    try:
        return os.getsid(pid) == root or os.getpgid(pid) == root
    except OSError:
        return False


def _tree_rows(root: int, include_root: bool) -> dict[int, dict]:
    if root <= 0:
        return {}
    rows = _table()
    found = {pid for pid in rows if _led_by(root, pid)}
    if include_root and root in rows:
        found.add(root)
    children: dict[int, list[int]] = {}
    for pid, row in rows.items():
        children.setdefault(row["ppid"], []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid: rows[pid] for pid in found}


def tree(root: int, include_root: bool = True) -> dict[int, float]:
    """pid -> CPU seconds (its own and its waited-for children's) of `root`, of every process in the session or
    process group `root` leads, and of everything below those (flow runs start sessions of their own).
    `include_root`: False when `root` died and its number may have been reused."""
    out = {}
    for pid, row in _tree_rows(root, include_root).items():
        times = row["cpu_times"]
        out[pid] = (times.user + times.system + times.children_user + times.children_system) if times else 0.0
    return out


def _signal(procs, sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the creation time first: a reused pid is left alone
        except psutil.Error:
            pass


def _signal_group(root: int, sig: int) -> None:
    try:
        os.killpg(root, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(root: int, include_root: bool = True, grace_s: float = 15.0) -> list[int]:
    """SIGTERM the tree of `root` (its group too while `root` is ours); SIGKILL what is left after `grace_s`.
    Returns the pids still alive at the end (empty when all stopped)."""
    procs = [row["proc"] for row in _tree_rows(root, include_root).values()]
    if include_root:
        _signal_group(root, signal.SIGTERM)
    _signal(procs, signal.SIGTERM)
    _, left = psutil.wait_procs(procs, timeout=grace_s)
    _signal(left, signal.SIGKILL)
    _, left = psutil.wait_procs(left, timeout=5)
    return sorted(proc.pid for proc in left if running(proc.pid))


def kill(root: int) -> None:
    """SIGKILL the session's group and every process of the tree until none is left (a fork bomb races)."""
    for _ in range(20):
        procs = [row["proc"] for row in _tree_rows(root, True).values()]
        _signal_group(root, signal.SIGKILL)
        _signal(procs, signal.SIGKILL)
        if not procs:
            return
        time.sleep(0.01)


def working_in(folder: Path) -> list[int]:
    """Processes (other than this one) whose current folder is `folder` or below it."""
    target = str(Path(folder).resolve())
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info["cwd"]
        if cwd and (cwd == target or cwd.startswith(target + os.sep)) and proc.pid != os.getpid():
            found.append(proc.pid)
    return found
