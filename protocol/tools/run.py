"""Workspace tool run_script: run a script or command in the workspace, bounded in time and output.

The command runs in its own session (process group) with the workspace as its
current folder. On timeout the WHOLE group gets SIGTERM, then SIGKILL after a
grace period, so children the script started die too; when the command ends,
any process it left behind in its group is stopped as well. Output (stdout and
stderr together) is captured in a bounded buffer: head and tail are kept, the
middle is counted and replaced by a marker.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from medbuilder.protocol.tools.context import ToolError, Workspace

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

    def as_text(self) -> str:
        if self.timed_out:
            status = f"TIMED OUT after {self.duration_s:.1f} s; the process group was killed"
        else:
            status = f"exit code {self.exit_code} after {self.duration_s:.1f} s"
        return f"$ {self.command}\n[{status}]\n{self.output or '(no output)'}"


def run_script(ctx: Workspace, command: str, timeout_s: float | None = None) -> ScriptResult:
    """Run a Python script or a shell command with the workspace as the current folder.

    Examples: "train.py --epochs 2", "python Datapath/make_splits.py",
    "bash train.sh", "ls -la Datapath". A script named first (or after
    python/bash) must be inside the workspace; `python` is the project's Python.
    The command is killed, with every process it started, when the time limit
    passes. Output (stdout and stderr) longer than the limit is cut to its head
    and tail; write long logs to a file and read parts of it with read_files.
    It returns the exit code (0 means success), whether it timed out, the
    duration and the output.

    Args:
        command: The script path with its arguments, or a shell command.
        timeout_s: Time limit in seconds; at most the run's limit, which is also the default.
    """
    argv = _argv_for(ctx, command)
    limit = ctx.script_timeout_s if timeout_s is None else min(float(timeout_s), ctx.script_timeout_s)
    if limit <= 0:
        raise ToolError(f"timeout_s must be positive; the run's limit is {ctx.script_timeout_s:.0f} s")
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=ctx.root, env=_child_env(ctx), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    capture = _BoundedCapture(process.stdout, ctx.output_chars, _live_sinks(ctx, command))
    capture.start()
    timed_out = False
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process, ctx.kill_grace_s)
    finally:
        _stop_leftovers(process)
    capture.join(timeout=5)
    capture.close_sinks()
    duration = time.monotonic() - started
    return ScriptResult(command, None if timed_out else process.returncode, timed_out, duration,
                        capture.text(), capture.total)


def _live_sinks(ctx: Workspace, command: str) -> list:
    """Where output goes while the command runs: the live log file and/or the console."""
    sinks = []
    if ctx.live_log is not None:
        ctx.live_log.parent.mkdir(parents=True, exist_ok=True)
        sink = ctx.live_log.open("ab")
        sink.write(f"\n$ {command}\n".encode())
        sinks.append(sink)
    if ctx.echo:
        sinks.append(sys.stdout.buffer)
    return sinks


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


def _child_env(ctx: Workspace) -> dict[str, str]:
    """The parent's environment without secrets, with this Python's folder first on PATH."""
    secret = re.compile(ctx.secret_env, re.IGNORECASE)
    env = {k: v for k, v in os.environ.items() if not secret.search(k)}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group, wait up to `grace_s`, then SIGKILL it."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _stop_leftovers(process: subprocess.Popen) -> None:
    """Background children the command left in its group are stopped when it ends."""
    if process.poll() is None:
        process.kill()
        process.wait()
    _signal_group(process.pid, signal.SIGKILL)


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
                    sink.flush()
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
            if sink is not sys.stdout.buffer:
                sink.close()

    def _drop(self, n_bytes: int) -> None:
        self.cut_lines += self.tail.count(b"\n", 0, n_bytes)
        del self.tail[:n_bytes]

    def text(self) -> str:
        if len(self.tail) > self.tail_limit:
            self._drop(len(self.tail) - self.tail_limit)
        cut = self.total - len(self.head) - len(self.tail)
        if cut <= 0:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        marker = (
            f"\n[... {cut:,} bytes ({self.cut_lines:,} lines) of output cut here; write long logs to a "
            "file and read parts of it with read_files ...]\n"
        )
        return self.head.decode("utf-8", errors="replace") + marker + self.tail.decode("utf-8", errors="replace")
