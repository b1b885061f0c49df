"""Pythons started ahead in a workspace's sandbox (protocol/tools/prestart.py): a script handed to one runs as
`python script.py` would, inside the same sandbox and limits, and each process runs one script only.

Real bubblewrap sandboxes and real processes; the prestarted Pythons import numpy (not torch and MONAI, whose
import the flow's own test covers) so the module stays fast.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_tools_run_script import leftovers, unique_seconds

from medbuilder.protocol.tools import Workspace, prestart, run_script, write_file
from medbuilder.protocol.tools.sandbox import SandboxConfig, SandboxLimits

LIMITS = SandboxLimits(cpu_s=60, memory_mib=4096, file_mib=50, processes=64, workspace_mib=50, tmp_mib=16)
STARTED_AHEAD = "Python started ahead with numpy imported"
PROBE = """
    import json, os, sys
    import copy
    print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(),
                      "stdin": sys.stdin.read(), "copy": copy.__file__, "file": __file__,
                      "autogroup": open("/proc/self/autogroup").read().split()[-1]}))
    sys.exit(int(sys.argv[1]))
"""


def workspace(tmp_path: Path, **limits) -> Workspace:
    config = SandboxConfig("on", "bwrap", replace(LIMITS, **limits), warm_imports=("numpy",))
    return Workspace.create(tmp_path / "ws", [], output_chars=4000, script_timeout_s=30, kill_grace_s=1.0,
                            sandbox=config)


def script(ws: Workspace, name: str, code: str) -> None:
    write_file(ws, name, textwrap.dedent(code))


@pytest.fixture(autouse=True)
def no_process_left():
    yield
    prestart.discard()


def test_a_prestarted_python_runs_the_script_as_python_would(tmp_path):
    ws = workspace(tmp_path)
    script(ws, "probe.py", PROBE)
    cold = run_script(ws, "python probe.py 3 x")
    assert prestart.prestart(ws) == 1
    warm = run_script(ws, "python probe.py 3 x")
    assert STARTED_AHEAD not in cold.sandbox and STARTED_AHEAD in warm.sandbox, warm.as_text()
    assert cold.exit_code == warm.exit_code == 3
    assert cold.output == warm.output, (cold.output, warm.output)  # argv, __main__, sys.path[0], stdin, cwd
    assert '"name": "__main__"' in warm.output and '"stdin": ""' in warm.output
    assert "/protocol/tools/copy.py" not in warm.output  # the program's own folder shadows nothing
    assert '"autogroup": "0"' in warm.output  # the normal CPU share again


def test_an_error_is_reported_from_the_scripts_own_frame(tmp_path):
    ws = workspace(tmp_path)
    script(ws, "fails.py", """
        def inner():
            raise ValueError("bad value in config")
        inner()
    """)
    cold = run_script(ws, "python fails.py")
    prestart.prestart(ws)
    warm = run_script(ws, "fails.py")
    assert STARTED_AHEAD in warm.sandbox
    assert cold.exit_code == warm.exit_code == 1
    assert cold.output == warm.output and "prestarted_python" not in warm.output and "runpy" not in warm.output
    assert warm.output.startswith("Traceback (most recent call last):\n  File \"") and "fails.py" in warm.output


def test_each_process_runs_one_script_and_the_queue_is_kept_in_order(tmp_path):
    ws = workspace(tmp_path)
    script(ws, "pid.py", "import os\nprint(os.getppid(), os.getpid())\n")
    assert prestart.prestart(ws, 2) == 2
    assert prestart.prestart(ws, 2) == 0  # two are on their way already
    first, second, third = (run_script(ws, "python pid.py") for _ in range(3))
    assert STARTED_AHEAD in first.sandbox and STARTED_AHEAD in second.sandbox
    assert STARTED_AHEAD not in third.sandbox  # none left: a fresh Python
    assert all(r.exit_code == 0 for r in (first, second, third))


def test_a_prestarted_script_is_timed_and_killed_with_its_processes(tmp_path):
    ws = workspace(tmp_path)
    marker = unique_seconds()
    script(ws, "spin.py", """
        import subprocess, sys
        subprocess.Popen(["sleep", sys.argv[1]])
        while True:
            pass
    """)
    prestart.prestart(ws)
    result = run_script(ws, f"python spin.py {marker}", timeout_s=2)
    assert STARTED_AHEAD in result.sandbox and result.timed_out, result.as_text()
    assert not leftovers(marker)


def test_the_sandbox_limits_hold_in_a_prestarted_python(tmp_path):
    ws = workspace(tmp_path, file_mib=1)
    script(ws, "big.py", "open('big.bin', 'wb').write(b'x' * (4 * 1024 * 1024))\n")
    prestart.prestart(ws)
    result = run_script(ws, "python big.py")
    assert STARTED_AHEAD in result.sandbox and result.exit_code != 0 and result.limit == "file_size", result.as_text()
    outside = tmp_path / "outside.txt"
    script(ws, "escape.py", f"open({str(outside)!r}, 'w').write('x')\n")
    prestart.prestart(ws)
    refused = run_script(ws, "python escape.py")
    assert STARTED_AHEAD in refused.sandbox and refused.exit_code == 1 and not outside.exists(), refused.as_text()


def test_imports_wait_at_low_priority_and_discard_ends_them(tmp_path):
    ws = workspace(tmp_path)
    prestart.prestart(ws)
    waiting = prestart.POOL._queued[prestart.key_of(ws)][0].result(timeout=30)  # a look, not a take
    assert waiting.alive() and Path(f"/proc/{waiting.process.pid}/autogroup").read_text().split()[-1] == "19"
    assert prestart.discard(ws.root) == 1
    deadline = time.monotonic() + 5
    while waiting.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not waiting.alive() and prestart.take(ws) is None


def test_no_prestart_under_tight_memory_limits_or_for_other_commands(tmp_path):
    assert prestart.prestart(workspace(tmp_path, memory_mib=400)) == 0
    ws = workspace(tmp_path)
    prestart.prestart(ws)
    shell = run_script(ws, "echo hello")
    assert shell.exit_code == 0 and STARTED_AHEAD not in shell.sandbox
    script(ws, "ok.py", "print('ok')\n")
    assert STARTED_AHEAD in run_script(ws, "python ok.py").sandbox  # still there for the Python script
