"""cgroups for one sandboxed command: a pids cgroup (processes and threads) and a memory cgroup (the tree's
memory, shared memory included), v1 or v2, where this process may make them; the command joins them
between fork and exec (`sandbox.make_preexec`)."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

MIB = 1024 * 1024
log = logging.getLogger(__name__)


class PidsCgroup:
    """A pids cgroup (v1 or v2) capping processes and threads, where this process may make one."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        v1, v2 = Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")
        for base in (v1, v2):
            if not ((base == v1 and (base / "tasks").exists()) or "pids" in _read(base / "cgroup.subtree_control")):
                continue
            _remove_stale(base)
            path = base / f"medbuilder-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(limit))
                return cls(path)
            except OSError:
                _rmdir(path)
        return None

    def limit_hit(self) -> bool:
        """Whether a fork was refused because of the cap."""
        return any(line.startswith("max ") and line.split()[1] != "0" for line in _read(self.path / "pids.events").splitlines())

    def remove(self) -> None:
        for _ in range(50):  # the kernel takes a moment to release the last killed tasks
            if _rmdir(self.path):
                return
            time.sleep(0.02)
        log.warning("could not remove the pids cgroup %s", self.path)


class MemoryCgroup(PidsCgroup):
    """A memory cgroup (v1 memory.limit_in_bytes, v2 memory.max): the tree's memory in one sum, shared memory
    (MAP_SHARED, shmem) included; past the limit the kernel reclaims, then kills inside the cgroup (on v2 the
    whole cgroup, memory.oom.group; on v1 one process, and the sandbox's watchdog ends the rest)."""

    @classmethod
    def create(cls, limit_mib: int) -> MemoryCgroup | None:
        v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
        for base, knob in ((v1, "memory.limit_in_bytes"), (v2, "memory.max")):
            present = (base / "tasks").exists() if base == v1 else "memory" in _read(base / "cgroup.subtree_control").split()
            if not present:
                continue
            _remove_stale(base)
            path = base / f"medbuilder-{uuid.uuid4().hex[:12]}"
            try:
                path.mkdir()
                (path / knob).write_text(str(limit_mib * MIB))
                if base == v2:
                    _write_if_present(path / "memory.oom.group", "1")  # an OOM kill takes the whole tree
                return cls(path)
            except OSError:
                _rmdir(path)
        return None

    def limit_hit(self) -> bool:
        """Whether the kernel killed a process of the cgroup for memory."""
        text = _read(self.path / "memory.events") or _read(self.path / "memory.oom_control")
        return any(line.startswith("oom_kill ") and line.split()[1] != "0" for line in text.splitlines())


def _remove_stale(base: Path, min_age_s: float = 600) -> None:
    """Empty cgroups left by flow processes that were killed (younger ones may be about to be joined)."""
    for stale in base.glob("medbuilder-*"):
        try:
            if _read(stale / "cgroup.procs").strip() == "" and time.time() - stale.stat().st_mtime > min_age_s:
                stale.rmdir()
        except OSError:
            continue


def _write_if_present(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
