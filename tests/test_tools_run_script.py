"""run_script with real processes: exit codes, a timeout that kills the whole process group, cut output."""

from __future__ import annotations

import re
import sys
import time

from tools_fixtures import process_gone, roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import render, run_script, write_file

HANGS_WITH_A_CHILD = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL stops this one
child = subprocess.Popen(["sleep", "1000"])
print("child pid", child.pid, flush=True)
while True:
    time.sleep(1)
"""


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
    started = time.monotonic()
    result = run_script(ws, "hang.py", timeout_s=1.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code is None
    assert elapsed < 1.5 + ws.kill_grace_s + 3, f"took {elapsed:.1f} s"
    child = int(re.search(r"child pid (\d+)", result.output).group(1))
    deadline = time.monotonic() + 3
    while not process_gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(child), f"child sleep {child} survived the timeout"
    assert "TIMED OUT" in render(result)


def test_background_children_are_stopped_when_the_command_ends(ws):
    result = run_script(ws, "sleep 1000 & echo bg $!", timeout_s=10)
    assert result.exit_code == 0 and result.duration_s < 5
    pid = int(result.output.split()[1])
    deadline = time.monotonic() + 3
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(pid)


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
