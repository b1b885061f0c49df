"""Python processes started ahead in a workspace's sandbox, with torch and MONAI already imported.

A sandboxed script that imports MONAI spends about 6 s of its start on imports on two cores (MONAI's
``__init__`` imports every submodule, torchvision and transformers among them): most of the Module
Architect's batch check, and the same again at the start of every training run. Where the flow knows
scripts are coming, it starts the Pythons that will run them ahead (``prestart``): in the very sandbox a
script of that workspace gets (``sandbox.prepare``: the same mounts, rlimits, cgroups, environment and uid),
running medbuilder's own ``prestarted_python.py``, which imports the libraries and waits. ``run_script``
hands a ``python <script>.py ...`` command to one (``take``) instead of starting a new process: from then on
it is that command's process, watched, limited, timed and killed like any other, and it ends with the
script. Nothing from an agent reaches the process before the hand-over but the argv a cold start would
exec, and one process runs one script only.

The imports run at a low CPU share (``low_priority``): they take mostly CPU time nothing else wants, so
they hardly slow the stages they overlap; the hand-over gives the process its normal share back. Several
processes are started one after the other, the next when the last has finished its imports or was taken
by a script (its imports then finish at the normal share while the next one's begin).

Every process is spawned from one long-lived thread: a process (``PR_SET_PDEATHSIG``, bwrap's
``--die-with-parent``) dies with the thread that started it, and a flow's task threads come and go.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.tools.sandbox import (
    MemoryCgroup, PidsCgroup, SandboxUnavailable, kill_tree, make_preexec, prepare,
)
from medbuilder.protocol.tools.script_env import child_env

log = logging.getLogger(__name__)

PROGRAM = Path(__file__).with_name("prestarted_python.py")
MIN_MEMORY_MIB = 2048  # the imported libraries take about 0.5 GiB: under tighter limits scripts start cold
READY_WAIT_S = 120  # the longest the next process waits for the last one's imports


@dataclass
class Prestarted:
    """A process waiting for its script, the cgroups it joined, the modules it imports, and the pipe on which
    it says its imports are done."""

    process: subprocess.Popen
    cgroups: tuple
    imports: tuple[str, ...]
    ready_fd: int
    taken: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the imports finished (the process wrote its byte, or ended) within timeout_s; the wait also
        ends when a script takes the process (its imports then run at the normal share, and the next
        process need not wait for them). Called once, by the spawner thread, which alone closes the pipe."""
        deadline = time.monotonic() + timeout_s
        try:
            while not self.taken.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([self.ready_fd], [], [], min(0.2, max(0.0, deadline - time.monotonic())))
                if readable:
                    return True
            return False
        finally:
            os.close(self.ready_fd)

    def hand_over(self, argv: list[str]) -> bool:
        """Give the process its script (argv without the interpreter) and its normal CPU share back; False
        when it is gone."""
        if not self.alive():
            return False
        self.taken.set()
        low_priority(self, False)
        try:
            self.process.stdin.write(json.dumps({"argv": argv}).encode() + b"\n")
            self.process.stdin.close()
        except (OSError, ValueError):
            return False
        return True

    def discard(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if self.alive():
            kill_tree(self.process.pid)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.process.stdout:
            self.process.stdout.close()
        remove_cgroups(self.cgroups)


def low_priority(ready: Prestarted, low: bool) -> None:
    """The process's CPU share while it imports (low) or runs its script. The scheduler shares the CPU between
    sessions (autogroups, where the kernel keeps them) and cgroups (v2 with the cpu controller) before it
    shares it between threads, so those are what is lowered: the session's autogroup nice 19, the cgroup's
    cpu.weight 1; both go back at the hand-over (any owner may lower and restore them)."""
    _write(Path(f"/proc/{ready.process.pid}/autogroup"), "19" if low else "0")
    for cgroup in ready.cgroups:
        if cgroup and (cgroup.path / "cpu.weight").exists():
            _write(cgroup.path / "cpu.weight", "1" if low else "100")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


def remove_cgroups(cgroups: tuple) -> None:
    for cgroup in cgroups:
        if cgroup:
            cgroup.remove()


def key_of(ctx) -> tuple:
    """What the process's sandbox depends on: the workspace, its read-only roots and the sandbox settings."""
    return str(ctx.root), tuple(str(p) for p in ctx.read_roots), ctx.sandbox


def wanted(ctx) -> bool:
    return bool(ctx.sandbox.warm_imports) and ctx.sandbox.limits.memory_mib >= MIN_MEMORY_MIB


def fits(argv: list[str]) -> bool:
    """Only `python <script>.py ...` commands (run_script's argv for them) can run in a prestarted process."""
    return len(argv) >= 2 and argv[0] == sys.executable and argv[1].endswith(".py")


class Pool:
    """Prestarted processes per key, oldest first; spawned on one thread that lives as long as this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._queued: dict[tuple, list[Future]] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._spawner: threading.Thread | None = None
        self._importing = threading.Event()  # the spawner waits for a process's imports

    def prestart(self, ctx, count: int = 1) -> int:
        """Have `count` processes for the workspace's next scripts on their way; how many were added."""
        if not wanted(ctx):
            return 0
        key = key_of(ctx)
        with self._lock:
            waiting = self._queued.setdefault(key, [])
            added = [Future() for _ in range(max(0, count - len(waiting)))]
            waiting.extend(added)
            if self._spawner is None:  # a daemon: the interpreter's exit does not wait for an import
                self._spawner = threading.Thread(target=self._spawn_jobs, name="prestart", daemon=True)
                self._spawner.start()
        for future in added:
            self._jobs.put((future, ctx))
        return len(added)

    def _spawn_jobs(self) -> None:
        while True:
            future, ctx = self._jobs.get()
            _spawn_into(future, ctx, self._importing)

    def take(self, ctx) -> Prestarted | None:
        """The oldest prestarted process of the workspace, still alive, for the caller to hand its script to."""
        with self._lock:
            waiting = self._queued.get(key_of(ctx)) or []
            future = waiting.pop(0) if waiting else None
        if future is None or (self._importing.is_set() and future.cancel()):
            return None  # queued behind another process's imports: a cold start is sooner
        ready = _result(future)
        if ready is not None and ready.alive():
            return ready
        if ready is not None:
            ready.discard()
        return None

    def discard(self, root: Path | str | None = None) -> int:
        """End the prestarted processes of the workspace `root` (all of them for None); how many there were."""
        with self._lock:
            keys = [k for k in self._queued if root is None or k[0] == str(Path(root).resolve())]
            futures = [f for k in keys for f in self._queued.pop(k)]
        for future in futures:
            ready = None if future.cancel() else _result(future)
            if ready is not None:
                ready.discard()
        return len(futures)


def _result(future: Future) -> Prestarted | None:
    try:
        return future.result(timeout=READY_WAIT_S + 60)
    except Exception as err:  # a sandbox that cannot start: the script starts cold and meets the problem itself
        log.info("no prestarted Python: %s", err)
        return None


def _spawn_into(future: Future, ctx, importing: threading.Event) -> None:
    """Spawn one process into `future` (unless it was cancelled), then wait for its imports before the
    spawner starts the next."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        ready = _spawn(ctx)
    except BaseException as err:
        future.set_exception(err)
        return
    future.set_result(ready)
    if ready is not None:
        importing.set()
        try:
            ready.wait_ready(READY_WAIT_S)  # the next import starts when this one is done
        finally:
            importing.clear()


def _spawn(ctx) -> Prestarted | None:
    imports = tuple(ctx.sandbox.warm_imports)
    read_end, write_end = os.pipe()
    try:
        argv = [sys.executable, str(PROGRAM), "--ready-fd", str(write_end), *imports]
        try:
            prepared = prepare(ctx.sandbox, argv, ctx.root, ctx.read_roots)
        except SandboxUnavailable:
            os.close(read_end)
            return None
        limits = ctx.sandbox.limits
        cgroups = (PidsCgroup.create(limits.processes), MemoryCgroup.create(limits.memory_mib))
        try:
            process = subprocess.Popen(
                prepared.argv, cwd=ctx.root, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(write_end,),
                preexec_fn=make_preexec(limits, *cgroups))
        except BaseException:
            remove_cgroups(cgroups)
            os.close(read_end)
            raise
    finally:
        os.close(write_end)
    ready = Prestarted(process, cgroups, imports, read_end)
    low_priority(ready, True)  # its own session (start_new_session) and cgroups: nothing else is lowered
    return ready


POOL = Pool()
atexit.register(POOL.discard)


def prestart(ctx, count: int = 1) -> int:
    return POOL.prestart(ctx, count)


def take(ctx) -> Prestarted | None:
    return POOL.take(ctx)


def discard(root: Path | str | None = None) -> int:
    return POOL.discard(root)
