"""The sandbox agent-written scripts run in: bubblewrap isolation, resource limits, a watchdog.

`prepare` turns a command's argv into what `run_script` starts:

* with bubblewrap (``bwrap``): only what scripts need, read-only (the system with
  /etc's secrets masked, Python, medbuilder's code, the dataset roots), the
  workspace read-write; /proc/sys read-only; empty /home, /root, /run and /var;
  private /tmp and /dev/shm (size-capped tmpfs), no network, its own PID namespace
  (so the script cannot see other processes nor read their environment), no
  capabilities;
* without it (setting ``sandbox=off``, or ``auto`` where bwrap is missing or
  broken): the plain command, with a loud warning in the result and the log.

Either way the child gets rlimits (CPU seconds, data memory, file size, no core
files), dies with its parent (PR_SET_DEATHSIG / ``--die-with-parent``), joins a
pids cgroup where one can be made, and a `Watchdog` kills its whole process
tree past the process, memory, CPU or workspace-growth limit.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import resource
import signal
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder import proctree
from medbuilder.protocol.tools.cgroups import MIB, MemoryCgroup, PidsCgroup  # noqa: F401 (run.py imports them here)
from medbuilder.protocol.tools.mounts import bwrap_argv

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
SANDBOX_UID = 62391  # no account of its own: a uid nothing else on the machine uses
NO_SANDBOX_WARNING = "bwrap not found: scripts run without filesystem/network isolation; install bubblewrap"


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run_script limits; the defaults leave room for real MONAI training on 2 cores."""

    cpu_s: int = 7200  # CPU seconds of the whole process tree (2 cores busy for an hour)
    memory_mib: int = 12288  # RLIMIT_DATA per process, and resident anonymous memory of the tree
    file_mib: int = 8192  # RLIMIT_FSIZE: the largest file a script may write
    processes: int = 512  # processes in the tree (pids cgroup, where available: processes and threads)
    workspace_mib: int = 20480  # how much the workspace may grow during one command
    tmp_mib: int = 2048  # size of the private /tmp (and /dev/shm) inside bwrap


@dataclass(frozen=True)
class SandboxConfig:
    mode: str = "auto"  # auto: bwrap if it works, else run unisolated with a warning; on: bwrap or refuse; off
    bwrap: str = "bwrap"  # command name or path of bubblewrap
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    uid: int = SANDBOX_UID  # when medbuilder runs as root, scripts run as this uid (and group)
    warm_imports: tuple[str, ...] = ()  # modules a prestarted Python imports before its script (prestart.py)

    @classmethod
    def from_settings(cls, settings) -> SandboxConfig:
        return cls(settings.sandbox, settings.sandbox_bwrap, SandboxLimits(
            cpu_s=settings.sandbox_cpu_s, memory_mib=settings.sandbox_memory_mib, file_mib=settings.sandbox_file_mib,
            processes=settings.sandbox_processes, workspace_mib=settings.sandbox_workspace_mib,
            tmp_mib=settings.sandbox_tmp_mib,
        ), getattr(settings, "sandbox_uid", SANDBOX_UID),
            tuple(m.strip() for m in getattr(settings, "sandbox_warm_imports", "").split(",") if m.strip()))


class SandboxUnavailable(RuntimeError):
    """mode 'on' and bubblewrap cannot run here."""


@dataclass
class Prepared:
    """What to start: argv, and how it is isolated (for the result and the log)."""

    argv: list[str]
    engine: str  # "bwrap" or "none"
    description: str
    warning: str | None = None


def prepare(config: SandboxConfig, argv: list[str], workspace: Path, read_roots=()) -> Prepared:
    if config.mode == "off":
        warning = "sandbox disabled (setting sandbox=off): scripts run without filesystem/network isolation"
        return Prepared(argv, "none", f"sandbox: NONE ({warning})", warning)
    bwrap, problem = _working_bwrap(config.bwrap)
    if bwrap is None:
        if config.mode == "on":
            raise SandboxUnavailable(f"{problem}; install bubblewrap (apt-get install bubblewrap) or set MEDBUILDER_SANDBOX=auto")
        warning = NO_SANDBOX_WARNING + (f" ({problem})" if problem else "")
        log.warning(warning)
        return Prepared(argv, "none", f"sandbox: NONE ({warning})", warning)
    closed = [str(root) for root in read_roots if not others_can_read(Path(root))]
    as_user = [] if closed else _as_sandbox_user(config, workspace)
    argv = bwrap_argv(bwrap, workspace, read_roots, config.limits.tmp_mib, switch_user=bool(as_user)) + \
        ["--", *as_user, *argv]
    description = "sandbox: bwrap (no network, read-only system, workspace writable)"
    if closed and os.geteuid() == 0:
        description += (f"; as root without capabilities, not as uid {config.uid}: {', '.join(closed)} is not "
                        "readable by other users (chmod -R o+rX there to run scripts unprivileged)")
    return Prepared(argv, "bwrap", description)


def others_can_read(root: Path, sample: int = 20) -> bool:
    """The folder and its first entries can be read by a uid that does not own them (the sandbox uid)."""
    try:
        if (os.stat(root).st_mode & 0o005) != 0o005:
            return False
        with os.scandir(root) as entries:
            for _, entry in zip(range(sample), entries):
                mode = entry.stat(follow_symlinks=False).st_mode
                wanted = 0o005 if entry.is_dir(follow_symlinks=False) else 0o004
                if not entry.is_symlink() and (mode & wanted) != wanted:
                    return False
    except OSError:
        return False
    return True


def _as_sandbox_user(config: SandboxConfig, workspace: Path) -> list[str]:
    """As root: the script runs as the sandbox's own unprivileged uid (setpriv, inside bwrap, after the mounts),
    and the workspace is handed to that uid first. Otherwise it runs as the caller, who is not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv (util-linux) not found: sandboxed scripts run as root without capabilities")
        return []
    hand_over(workspace, config.uid)
    uid = str(config.uid)
    return [setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--no-new-privs", "--inh-caps=-all",
            "--bounding-set=-all", "--"]


def hand_over(workspace: Path, uid: int) -> None:
    """The workspace and everything in it owned by `uid` (links themselves, never what they point at); its
    folder searchable by others, since bwrap enters it as root without capabilities."""
    os.lchown(workspace, uid, uid)
    os.chmod(workspace, os.stat(workspace).st_mode & 0o7777 | 0o711)
    for folder, dirs, files, folder_fd in os.fwalk(workspace, follow_symlinks=False):
        for name in dirs + files:
            try:
                if os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_uid != uid:
                    os.chown(name, uid, uid, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                continue


@functools.lru_cache(maxsize=8)
def _working_bwrap(name: str) -> tuple[str | None, str]:
    """The bwrap path if it exists and can start a sandbox here (checked once), else why not."""
    path = shutil.which(name)
    if path is None:
        return None, f"'{name}' is not an executable on PATH"
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-net",
                            "--unshare-pid", "--", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return None, f"{path} cannot start a sandbox here: {probe.stderr.strip()[:300]}"
    return path, ""


# -- in the child, between fork and exec --------------------------------------
def make_preexec(limits: SandboxLimits, *cgroups: "PidsCgroup | None"):
    """A preexec_fn: rlimits, death with the parent, joining the cgroups. Only plain syscalls here."""
    rlimits = [
        (resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5)),  # SIGXCPU first, SIGKILL 5 s later
        (resource.RLIMIT_DATA, (limits.memory_mib * MIB,) * 2),
        (resource.RLIMIT_FSIZE, (limits.file_mib * MIB,) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    procs_files = [str(c.path / "cgroup.procs") for c in cgroups if c is not None]

    def preexec() -> None:
        for which, values in rlimits:
            resource.setrlimit(which, values)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        for procs in procs_files:
            try:
                fd = os.open(procs, os.O_WRONLY)
                os.write(fd, b"0")  # 0: the writing process itself
                os.close(fd)
            except OSError:  # the cgroup went away: the watchdog still counts processes and memory
                pass

    return preexec


# -- in the parent, while the command runs ------------------------------------
class Watchdog(threading.Thread):
    """Polls the command's process tree and workspace; kills the tree past a limit and says which."""

    def __init__(self, workspace: Path, limits: SandboxLimits, interval_s: float = 0.25,
                 memory_cgroup: "MemoryCgroup | None" = None):
        """Measures the workspace now: create it before the command starts, then `watch` the command."""
        super().__init__(daemon=True)
        self.root_pid, self.workspace, self.limits, self.interval_s = 0, workspace, limits, interval_s
        self.memory_cgroup = memory_cgroup
        self.reason: str | None = None
        self.peak_processes = 0
        self._halt = threading.Event()
        self._workspace_start = directory_bytes(workspace)
        self._next_size_check, self._size_every = 0.0, 1.0
        self._page = os.sysconf("SC_PAGE_SIZE")

    def watch(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.start()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.is_set() and self.reason is None:
            before = self.peak_processes
            tree = process_tree(self.root_pid)
            self.reason = self._check(tree)
            if self.reason:
                kill_tree(self.root_pid)
                return
            # a scan costs a few ms: look again soon only while the tree grows (a fork bomb)
            self._halt.wait(0.01 if self.peak_processes > max(before, 8) else self.interval_s)

    def _check(self, tree: dict[int, float]) -> str | None:
        limits = self.limits
        self.peak_processes = max(self.peak_processes, len(tree))
        if len(tree) >= limits.processes:
            return f"process limit: {len(tree)} processes reached the limit of {limits.processes}"
        if self.memory_cgroup is not None and self.memory_cgroup.limit_hit():
            # the kernel kills one process at a time (v1 cannot kill the group): the survivors would run on
            return f"memory limit: the processes' memory (shared memory included) reached {limits.memory_mib} MiB"
        cpu = sum(tree.values())
        if cpu > limits.cpu_s:
            return f"CPU time limit: the processes used {cpu:.0f} CPU seconds, limit {limits.cpu_s}"
        resident = _tree_memory(tree, self._page, limits.memory_mib * MIB)
        if resident > limits.memory_mib * MIB:
            return f"memory limit: {resident / MIB:.0f} MiB resident, limit {limits.memory_mib} MiB"
        return self._check_workspace(tree)

    def _check_workspace(self, tree) -> str | None:
        now = time.monotonic()
        if now < self._next_size_check:
            return None
        grown = directory_bytes(self.workspace) + open_deleted_bytes(tree, self.workspace) - self._workspace_start
        spent = time.monotonic() - now
        self._next_size_check = time.monotonic() + max(self._size_every, 10 * spent)  # a big tree costs at most 10 %
        if grown > self.limits.workspace_mib * MIB:
            return (f"workspace size limit: the workspace grew by {grown / MIB:.0f} MiB during the command, "
                    f"limit {self.limits.workspace_mib} MiB")
        return None


def process_tree(root_pid: int) -> dict[int, float]:
    """root_pid and every process below it, or in its session: pid -> CPU seconds (own and waited-for children)."""
    return proctree.tree(root_pid)


def kill_tree(root_pid: int) -> None:
    """SIGKILL the session's group and every process of the tree, until none is left (a fork bomb races)."""
    proctree.kill(root_pid)


UPPER_BOUND_MARGIN = 64 * MIB  # the kernel's per-thread RSS counters lag by a few pages each


def _tree_memory(tree: dict[int, float], page: int, limit: int) -> int:
    """The tree's memory as `_anon_bytes` sums it. Reading smaps_rollup walks a process's page tables under its
    memory-map lock (29 ms for a 1.4 GiB training process, four times a second), so the counters in
    /proc/<pid>/status are summed first: resident anonymous and shared pages bound the proportional shares
    from above, and while that bound is under the limit the exact sum is too."""
    bounds = [_resident_bound(pid) for pid in tree]
    if None not in bounds and sum(bounds) + UPPER_BOUND_MARGIN <= limit:
        return sum(bounds)
    return sum(_anon_bytes(pid, page) for pid in tree)


def _resident_bound(pid: int) -> int | None:
    """RssAnon + RssShmem of /proc/<pid>/status (an O(1) read); 0 for a process that is gone, None where
    the kernel does not count them (before 4.5)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return 0
    fields = dict(line.split(b":", 1) for line in lines if line.startswith((b"RssAnon:", b"RssShmem:")))
    if len(fields) < 2:
        return None
    try:
        return sum(int(value.split()[0]) * 1024 for value in fields.values())
    except (ValueError, IndexError):
        return None


def _anon_bytes(pid: int, page: int) -> int:
    """Memory the process holds: its share of anonymous and shared (MAP_SHARED, shmem) pages, from smaps_rollup;
    resident minus file-backed pages where that file is missing (older kernels)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            fields = dict(line.split(b":", 1) for line in handle.read().splitlines() if b":" in line)
        return sum(int(fields[key].split()[0]) * 1024 for key in (b"Pss_Anon", b"Pss_Shmem") if key in fields) \
            if b"Pss_Anon" in fields else _statm_bytes(pid, page)
    except (OSError, ValueError):
        return _statm_bytes(pid, page)


def _statm_bytes(pid: int, page: int) -> int:
    try:
        size, resident, shared = open(f"/proc/{pid}/statm").read().split()[:3]
    except (OSError, ValueError):
        return 0
    return (int(resident) - int(shared)) * page


def directory_bytes(root: Path) -> int:
    """Bytes allocated on disk by the files under root: walked with directory descriptors, so paths longer
    than PATH_MAX count too; links are not followed."""
    total = 0
    try:
        for _, _, files, folder_fd in os.fwalk(root, follow_symlinks=False):
            for name in files:
                try:
                    total += os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_blocks * 512
                except OSError:
                    continue
    except OSError:
        pass
    return total


def open_deleted_bytes(pids, root: Path) -> int:
    """Bytes of files under root that were deleted while a process of the tree keeps them open."""
    prefix, total, seen = str(root) + os.sep, 0, set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if not (target.endswith(" (deleted)") and target.startswith(prefix)):
                    continue
                info = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total
