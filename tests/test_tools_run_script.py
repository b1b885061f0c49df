"""run_script with real processes: exit codes, a timeout that kills the whole process group, cut output."""

from __future__ import annotations

import os
import random
import re
import sys
import time

from tools_fixtures import roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import render, run_script, write_file

HANGS_WITH_A_CHILD = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL stops this one
child = subprocess.Popen(["sleep", sys.argv[1]])
print("child started", flush=True)
while True:
    time.sleep(1)
"""


def unique_seconds() -> str:
    """A sleep duration no other process on this machine is likely to use: marks the processes of one test."""
    return f"{random.randrange(10**6, 10**7)}.{os.getpid()}"


def leftovers(marker: str, wait_s: float = 3.0) -> list[int]:
    """Live processes (not zombies) whose command line contains `marker`, after waiting up to `wait_s` for them to go.

    PIDs printed inside the sandbox are those of its own PID namespace, so tests find processes by command line.
    """
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and marker.encode() in open(f"/proc/{entry.name}/cmdline", "rb").read():
                    state = open(f"/proc/{entry.name}/stat").read().rsplit(")", 1)[1].split()[0]
                    found += [int(entry.name)] if state not in "ZX" else []
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_python_script_runs_in_the_workspace_with_the_project_python(ws, roots):
    write_file(ws, "hello.py", "import os, sys\nprint(os.getcwd())\nprint(sys.prefix)\nsys.exit(3)\n")
    result = run_script(ws, "hello.py")
    assert result.exit_code == 3 and not result.timed_out
    assert result.output.split() == [str(roots.workspace), sys.prefix]
    assert "exit code 3" in render(result)


def test_shell_command_and_python_on_path(ws):
    write_file(ws, "data/a.txt", "x")
    result = run_script(ws, "ls data && python -c 'import sys; print(sys.prefix)'")
    assert result.exit_code == 0 and result.output.split() == ["a.txt", sys.prefix]


def test_secrets_are_not_passed_to_scripts(ws, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("MEDBUILDER_LLM_API_KEY", "also-secret")
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    result = run_script(ws, "env")
    assert "PATH=" in result.output
    for value in ("sk-should-not-leak", "also-secret", "hf-secret"):
        assert value not in result.output


def test_timeout_kills_the_whole_process_group(ws):
    write_file(ws, "hang.py", HANGS_WITH_A_CHILD)
    marker = unique_seconds()
    started = time.monotonic()
    result = run_script(ws, f"hang.py {marker}", timeout_s=1.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None and "child started" in result.output
    assert 1.5 + ws.kill_grace_s * 0.9 < elapsed < 1.5 + ws.kill_grace_s + 3, f"took {elapsed:.1f} s"
    assert not leftovers(marker), "the child sleep survived the timeout"
    assert "TIMED OUT" in render(result)


GRACEFUL = """
import pathlib, signal, sys, time
def save_and_exit(*_):
    pathlib.Path('saved.txt').write_text('checkpoint')
    print('saved on SIGTERM', flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, save_and_exit)
print('ready', flush=True)
while True:
    time.sleep(0.05)
"""


def test_timeout_sends_sigterm_to_the_script_first(ws):
    """Inside bwrap too: the script, not only bwrap, gets SIGTERM and its grace period to save its work."""
    write_file(ws, "graceful.py", GRACEFUL)
    result = run_script(ws, "graceful.py", timeout_s=1.5)
    assert result.timed_out and "ready" in result.output and "saved on SIGTERM" in result.output, render(result)
    assert (ws.root / "saved.txt").read_text() == "checkpoint"
    assert result.duration_s < 1.5 + ws.kill_grace_s


def test_background_children_are_stopped_when_the_command_ends(ws):
    marker = unique_seconds()
    result = run_script(ws, f"sleep {marker} & echo bg $!", timeout_s=10)
    assert result.exit_code == 0 and result.duration_s < 5 and result.output.startswith("bg ")
    assert not leftovers(marker)


def test_long_output_is_cut_to_head_and_tail(ws):
    write_file(ws, "chatty.py", "for i in range(100_000):\n    print(f'line {i}')\n")
    result = run_script(ws, "python chatty.py")
    assert result.exit_code == 0 and result.output_chars > 1_000_000
    assert result.output.startswith("line 0\nline 1\n") and result.output.rstrip().endswith("line 99999")
    marker = re.search(r"\[\.\.\. ([\d,]+) bytes \(([\d,]+) lines\) of output cut here", result.output)
    assert marker and int(marker.group(1).replace(",", "")) > 1_000_000
    assert len(result.output) < ws.output_chars + 300


def test_timeout_is_capped_by_the_run_limit(ws):
    result = run_script(ws, "echo ok", timeout_s=10_000)
    assert result.exit_code == 0 and result.output.strip() == "ok"
