"""Processes of the stack: start one in its own session with a log, find what runs below it, stop it all.

Trees and signals through medbuilder.proctree (psutil); what the parts are and in which order they stop is in
``up.py``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from medbuilder.proctree import created, recorded_start, running, stop


def part_running(part: dict) -> bool:
    """The part's recorded process still runs (the same one: its creation time matches)."""
    return running(part["pid"], recorded_start(part))


def stop_part(part: dict, grace_s: float = 15.0) -> list[int]:
    """SIGTERM the part's process group and every process below it; SIGKILL what is left after `grace_s`.
    Returns the pids still alive at the end (empty when all stopped)."""
    return stop(part["pid"], include_root=part_running(part), grace_s=grace_s)


def launch(name: str, cmd: list[str], env: dict, state: Path) -> tuple[subprocess.Popen, dict]:
    log = state / f"{name}.log"
    handle = open(log, "ab")
    handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
    handle.flush()
    proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=os.getcwd())
    handle.close()
    return proc, {"pid": proc.pid, "pgid": proc.pid, "created": created(proc.pid), "cmd": cmd, "log": str(log)}
