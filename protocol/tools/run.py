"""Workspace tool run_script: run a script or command in the workspace, sandboxed and bounded.

The command runs in its own session (process group) with the workspace as its
current folder, inside the sandbox of `sandbox.py` (bubblewrap: read-only
system, no network, private /tmp; rlimits; a watchdog over processes, memory,
CPU and workspace growth). On timeout the WHOLE group gets SIGTERM, then SIGKILL
after a grace period, so children the script started die too; when the command
ends, any process it left behind is stopped as well. Output (stdout and stderr
together) is captured in a bounded buffer: head and tail are kept, the middle is
counted and replaced by a marker; the live log gets at most the file size limit.
The result says what stopped the command and how it was isolated. A Python script may run in a Python the
flow started ahead in the same sandbox, torch and MONAI already imported (``prestart.py``); the result says so.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from medbuilder.protocol.tools import prestart
from medbuilder.protocol.tools.clean import CleanStream, clean_output
from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.script_env import child_env
from medbuilder.protocol.tools.sandbox import (
    MIB, MemoryCgroup, PidsCgroup, Prepared, SandboxLimits, SandboxUnavailable, Watchdog, kill_tree, make_preexec, prepare, process_tree,
)

# How each limit's message (the watchdog's or the kernel's, below) starts, and its code.
LIMIT_CODES = {"memory limit": "memory", "CPU time limit": "cpu_time", "process limit": "processes",
               "file size limit": "file_size", "workspace size limit": "workspace_size", "/tmp size limit": "tmp_size"}
PYTHON_NAMES = {"python", "python3", Path(sys.executable).name}
SHELL_NAMES = {"bash", "sh"}


@dataclass
class ScriptResult:
    command: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    output: str
    output_chars: int
    stopped_by: str | None = None  # which limit ended the command, in words; None if it ended by itself
    sandbox: str = ""  # how it was isolated: "sandbox: bwrap (...)" or "sandbox: NONE (...)"
    warning: str | None = None  # e.g. bwrap missing: no isolation
    notes: list[str] = field(default_factory=list)  # e.g. output cut

    @property
    def limit(self) -> str | None:
        """The limit that ended the command, as a code (memory, cpu_time, processes, file_size, workspace_size,
        tmp_size, time); None when it ended by itself."""
        if self.timed_out:
            return "time"
        return next((code for start, code in LIMIT_CODES.items() if (self.stopped_by or "").startswith(start)), None)

    def as_text(self) -> str:
        if self.timed_out:
            status = f"TIMED OUT after {self.duration_s:.1f} s; the process group was killed"
        else:
            status = f"exit code {self.exit_code} after {self.duration_s:.1f} s"
        lines = [f"$ {self.command}", f"[{status}]"]
        if self.stopped_by:
            lines.append(f"[stopped by the {self.stopped_by}]")
        lines += [f"[{note}]" for note in self.notes]
        if self.sandbox:
            lines.append(f"[{self.sandbox}]")
        if self.warning:
            lines.append(f"[WARNING: {self.warning}]")
        return "\n".join(lines) + f"\n{self.output or '(no output)'}"


def run_script(ctx: Workspace, command: str, timeout_s: float | None = None) -> ScriptResult:
    """Run a Python script or a shell command with the workspace as the current folder.

    Examples: "train.py --epochs 2", "python Datapath/make_splits.py",
    "bash train.sh", "ls -la Datapath". A script named first (or after
    python/bash) must be inside the workspace; `python` is the project's Python.
    The command is killed, with every process it started, when the time limit
    passes. Output (stdout and stderr) longer than the limit is cut to its head
    and tail; write long logs to a file and read parts of it with read_files.
    It runs in a sandbox: no network, everything outside the workspace
    read-only, and limits on CPU time, memory, file size, processes and
    workspace growth. It returns the exit code (0 means success), whether it
    timed out, which limit stopped it if one did, the duration and the output.

    Args:
        command: The script path with its arguments, or a shell command.
        timeout_s: Time limit in seconds; at most the run's limit, which is also the default.
    """
    argv = _argv_for(ctx, command)
    limit = ctx.script_timeout_s if timeout_s is None else min(float(timeout_s), ctx.script_timeout_s)
    if limit <= 0:
        raise ToolError(f"timeout_s must be positive; the run's limit is {ctx.script_timeout_s:.0f} s")
    try:
        prepared = prepare(ctx.sandbox, argv, ctx.root, ctx.read_roots)
    except SandboxUnavailable as err:
        raise ToolError(f"cannot run scripts: {err}") from None
    before = _before_script(ctx, argv)
    watchdog = Watchdog(ctx.root, ctx.sandbox.limits)  # measures the workspace before the script can write
    process, cgroups, prepared = _start(ctx, argv, prepared)
    watchdog.memory_cgroup = cgroups[1]
    try:
        result = _run_started(ctx, command, prepared, process, cgroups, watchdog, limit)
        if before:
            result.notes.insert(0, before)
        return result
    finally:
        prestart.remove_cgroups(cgroups)


def _before_script(ctx: Workspace, argv: list[str]) -> str | None:
    """The workspace's pre-script step (medbuilder's preprocessing) for a Python script; its note, if any."""
    if ctx.before_script is None or not any(".py" in part for part in argv):
        return None
    return ctx.before_script(ctx)


def _start(ctx: Workspace, argv: list[str], prepared: Prepared) -> tuple[subprocess.Popen, tuple, Prepared]:
    """The command's process and cgroups: the workspace's prestarted Python if there is one for a Python script
    (handed the script), else a fresh process."""
    ready = prestart.take(ctx) if prestart.fits(argv) else None
    if ready is not None and ready.hand_over(argv[1:]):
        note = f"; Python started ahead with {', '.join(ready.imports)} imported"
        return ready.process, ready.cgroups, replace(prepared, description=prepared.description + note)
    if ready is not None:
        ready.discard()
    limits = ctx.sandbox.limits
    cgroups = (PidsCgroup.create(limits.processes), MemoryCgroup.create(limits.memory_mib))
    try:
        process = subprocess.Popen(
            prepared.argv, cwd=ctx.root, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=make_preexec(limits, *cgroups),
        )
    except BaseException:
        prestart.remove_cgroups(cgroups)
        raise
    return process, cgroups, prepared


def _run_started(ctx: Workspace, command: str, prepared: Prepared, process: subprocess.Popen, cgroups: tuple,
                 watchdog: Watchdog, limit: float) -> ScriptResult:
    limits = ctx.sandbox.limits
    started = time.monotonic()
    watchdog.watch(process.pid)
    capture = _BoundedCapture(process.stdout, ctx.output_chars, _live_sinks(ctx, command, prepared, limits))
    capture.start()
    timed_out = False
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = watchdog.reason is None
        _kill_group(process, ctx.kill_grace_s, prepared.engine == "bwrap")
    finally:
        watchdog.stop()
        _stop_leftovers(process)
    capture.join(timeout=5)
    capture.close_sinks()
    duration = time.monotonic() - started
    output = capture.text()
    exit_code = None if timed_out else process.returncode
    stopped_by = watchdog.reason or _limit_from_exit(exit_code, output, limits, *cgroups)
    notes = [f"output cut: {capture.total:,} bytes in all, the middle is not shown"] if capture.cut else []
    return ScriptResult(command, exit_code, timed_out, duration, output, capture.total,
                        stopped_by, prepared.description, prepared.warning, notes)


def _limit_from_exit(exit_code: int | None, output: str, limits: SandboxLimits, cgroup: PidsCgroup | None,
                     memory: MemoryCgroup | None = None) -> str | None:
    """The limit the kernel enforced, read from the exit status (-N or bwrap's 128+N) and the error text."""
    if exit_code in (None, 0):
        return None
    signum = -exit_code if exit_code < 0 else exit_code - 128
    if signum == signal.SIGXCPU or "CPU time limit exceeded" in output:
        return f"CPU time limit: a process used more than {limits.cpu_s} CPU seconds"
    if signum == signal.SIGXFSZ or "File too large" in output:
        return f"file size limit: a file reached the limit of {limits.file_mib} MiB"
    if memory is not None and memory.limit_hit():
        return f"memory limit: the processes' memory (shared memory included) reached {limits.memory_mib} MiB"
    if cgroup is not None and cgroup.limit_hit():
        return f"process limit: a new process or thread was refused past {limits.processes}"
    if any(text in output for text in ("MemoryError", "Cannot allocate memory", "can't allocate memory")):
        return f"memory limit: an allocation was refused past {limits.memory_mib} MiB"
    if "No space left on device" in output:
        return f"/tmp size limit (or a full disk): the sandbox's private /tmp holds at most {limits.tmp_mib} MiB"
    return None


def _live_sinks(ctx: Workspace, command: str, prepared: Prepared, limits: SandboxLimits) -> list:
    """Where output goes while the command runs: the live log file and/or the console, each capped."""
    sinks = []
    cap = limits.file_mib * MIB
    if ctx.live_log is not None:
        ctx.live_log.parent.mkdir(parents=True, exist_ok=True)
        sink = ctx.live_log.open("ab")
        sink.write(f"\n$ {command}\n[{prepared.description}]\n".encode())
        if prepared.warning:
            sink.write(f"[WARNING: {prepared.warning}]\n".encode())
        sinks.append(_CappedSink(sink, cap))
    if ctx.echo:
        sinks.append(_CappedSink(sys.stdout.buffer, cap))
    return sinks


class _CappedSink:
    """Passes the first `cap` bytes of a command's output on, then one marker, then nothing."""

    def __init__(self, sink, cap: int):
        self.sink, self.room, self.cut, self.clean = sink, cap, False, CleanStream()

    def write(self, chunk: bytes) -> None:
        chunk = self.clean(chunk)
        if self.room > 0:
            self.sink.write(chunk[:self.room])
            self.sink.flush()
        elif not self.cut:
            self.sink.write(b"\n[... output past the file size limit is not logged ...]\n")
            self.sink.flush()
            self.cut = True
        self.room -= len(chunk)

    def close(self) -> None:
        if self.sink is not sys.stdout.buffer:
            self.sink.close()


def _argv_for(ctx: Workspace, command: str) -> list[str]:
    """The argv to run; the script path, if any, must lie inside the workspace."""
    try:
        tokens = shlex.split(command)
    except ValueError as err:
        raise ToolError(f"cannot parse the command ({err}); check its quotes") from None
    if not tokens:
        raise ToolError("the command is empty; give a script path such as 'train.py' or a shell command")
    head, rest = tokens[0], tokens[1:]
    script_index = None
    if head.endswith((".py", ".sh")):
        script_index = 0
    elif Path(head).name in PYTHON_NAMES | SHELL_NAMES and rest and not rest[0].startswith("-"):
        script_index = 1
    if script_index is None:
        return ["bash", "-c", command]
    try:
        script = ctx.resolve_write(tokens[script_index])
    except ToolError as err:
        raise ToolError(f"{err}. Scripts run only from the workspace: copy it there with copy_files first.") from None
    if not script.is_file():
        raise ToolError(f"script '{tokens[script_index]}' does not exist in the workspace; write it with write_file first")
    args = tokens[script_index + 1:]
    if script.suffix == ".sh" or Path(head).name in SHELL_NAMES:
        return ["bash", str(script), *args]
    return [sys.executable, str(script), *args]


def _kill_group(process: subprocess.Popen, grace_s: float, sandboxed: bool) -> None:
    """SIGTERM the command's processes, wait up to `grace_s`, then SIGKILL them all.

    In bwrap, SIGTERM goes to the processes inside only: bwrap itself would die of it and
    take the script down at once (--die-with-parent), leaving it no grace to clean up.
    """
    if sandboxed:
        for pid in set(process_tree(process.pid)) - {process.pid}:
            _signal_pid(pid, signal.SIGTERM)
    else:
        _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _stop_leftovers(process: subprocess.Popen) -> None:
    """Background children the command left behind (in its group or below it) are stopped when it ends."""
    if process.poll() is None:
        process.kill()
        process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    kill_tree(process.pid)


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _BoundedCapture(threading.Thread):
    """Reads a pipe to its end, keeping the first and last bytes and counting the rest."""

    def __init__(self, pipe, limit_chars: int, sinks=()):
        super().__init__(daemon=True)
        self.pipe, self.head_limit, self.tail_limit = pipe, limit_chars * 2 // 3, limit_chars // 3
        self.head, self.tail, self.total, self.cut_lines = bytearray(), bytearray(), 0, 0
        self.sinks = list(sinks)

    def run(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read1(65536):
                for sink in self.sinks:
                    sink.write(chunk)
                self.total += len(chunk)
                room = self.head_limit - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                self.tail += chunk
                if len(self.tail) > 2 * self.tail_limit:
                    self._drop(len(self.tail) - self.tail_limit)

    def close_sinks(self) -> None:
        for sink in self.sinks:
            sink.close()

    @property
    def cut(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def _drop(self, n_bytes: int) -> None:
        self.cut_lines += self.tail.count(b"\n", 0, n_bytes)
        del self.tail[:n_bytes]

    def text(self) -> str:
        if len(self.tail) > self.tail_limit:
            self._drop(len(self.tail) - self.tail_limit)
        cut = self.total - len(self.head) - len(self.tail)
        if cut <= 0:
            return clean_output((bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace"))
        marker = (
            f"\n[... {cut:,} bytes ({self.cut_lines:,} lines) of output cut here; write long logs to a "
            "file and read parts of it with read_files ...]\n"
        )
        return clean_output(self.head.decode("utf-8", errors="replace")) + marker + \
            clean_output(self.tail.decode("utf-8", errors="replace"))
