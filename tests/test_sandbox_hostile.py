"""Hostile scripts run with run_script: the sandbox refuses them, stops them and says why.

Each script is a real process in a real bubblewrap sandbox (or, where a test says so,
in the unisolated fallback); limits are small so the suite stays fast.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_tools_run_script import leftovers, unique_seconds

from medbuilder.protocol.tools import ToolError, Workspace, run_script, write_file
from medbuilder.protocol.tools.sandbox import NO_SANDBOX_WARNING, SandboxConfig, SandboxLimits

SMALL = SandboxLimits(cpu_s=30, memory_mib=400, file_mib=5, processes=40, workspace_mib=20, tmp_mib=8)
ISOLATED = "sandbox: bwrap (no network, read-only system, workspace writable)"


def workspace(tmp_path: Path, read_roots=(), *, mode="auto", bwrap="bwrap", timeout_s=20.0, **limits) -> Workspace:
    config = SandboxConfig(mode, bwrap, replace(SMALL, **limits))
    return Workspace.create(tmp_path / "ws", read_roots, output_chars=2000, script_timeout_s=timeout_s,
                            kill_grace_s=1.0, sandbox=config)


def run(ws: Workspace, name: str, code: str, args: str = "", **kwargs):
    write_file(ws, name, textwrap.dedent(code))
    result = run_script(ws, f"{name} {args}".strip(), **kwargs)
    return result, result.as_text()


def sha256_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    (root / "labels.csv").write_text("image,label\ny0.png,yes\n")
    (root / "images" / "y0.png").write_bytes(os.urandom(2048))
    return root


def test_writes_outside_the_workspace_are_refused_and_the_dataset_is_unchanged(tmp_path, dataset):
    ws = workspace(tmp_path, [dataset])
    before = sha256_tree(dataset)
    result, text = run(ws, "vandal.py", f"""
        import os
        attempts = [lambda: open({str(dataset / 'labels.csv')!r}, 'a').write('z,no\\n'),
                    lambda: open({str(dataset / 'images' / 'y0.png')!r}, 'wb').write(b'0'),
                    lambda: os.remove({str(dataset / 'labels.csv')!r}),
                    lambda: open({str(dataset / 'new.txt')!r}, 'w').write('x'),
                    lambda: open('/etc/medbuilder-probe', 'w').write('x'),
                    lambda: open('/usr/medbuilder-probe', 'w').write('x')]
        for attempt in attempts:
            try:
                attempt()
                print('WROTE')
            except OSError as err:
                print('REFUSED', err.strerror)
        open('inside.txt', 'w').write('fine')
        print('workspace ok')
    """)
    assert result.exit_code == 0 and ISOLATED in text, text
    # as root the script runs as the sandbox uid: the dataset's files are not its own (EACCES) and read-only (EROFS)
    assert "WROTE" not in text and text.count("REFUSED Read-only file system") + text.count(
        "REFUSED Permission denied") == 6, text
    assert "workspace ok" in text and (ws.root / "inside.txt").read_text() == "fine"
    assert sha256_tree(dataset) == before
    assert not Path("/etc/medbuilder-probe").exists() and not Path("/usr/medbuilder-probe").exists()


SECRET_VARIABLES = ("OPENAI_API_KEY", "MEDBUILDER_LLM_API_KEY", "AWS_SECRET_ACCESS_KEY", "PREFECT_API_AUTH_STRING",
                    "KAGGLE_KEY", "AZURE_OPENAI_KEY", "GITHUB_PAT", "SSH_AUTH_SOCK", "MEDBUILDER_DATABASE_URL")


def test_a_script_sees_only_its_workspace_the_dataset_and_the_code(tmp_path, monkeypatch, dataset):
    """Secrets under HOME, other runs, Prefect's database, /etc/shadow and PostgreSQL's socket folder are not
    there; /proc/sys is read-only; the environment is an allowlist (names that look harmless included)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("FAKE-PRIVATE-KEY-0451\n")
    (home / ".prefect").mkdir()
    (home / ".prefect" / "prefect.db").write_text("FAKE-PREFECT-DB-0451")
    other_run = tmp_path / "other-run" / "workspace"
    other_run.mkdir(parents=True)
    (other_run / "notes.txt").write_text("FAKE-OTHER-RUN-0451")
    monkeypatch.setenv("HOME", str(home))
    for name in SECRET_VARIABLES:
        monkeypatch.setenv(name, f"FAKE-{name}-0451")
    monkeypatch.setenv("PREFECT_API_URL", "http://admin:FAKE-URL-PASSWORD-0451@127.0.0.1:4200/api")
    monkeypatch.setenv("LANG", "C.UTF-8")
    probes = [home / ".ssh" / "id_rsa", home / ".prefect" / "prefect.db", other_run / "notes.txt",
              Path.home() / ".prefect" / "prefect.db", "/etc/shadow", dataset / "labels.csv"]
    result, text = run(workspace(tmp_path, [dataset]), "snoop.py", f"""
        import os
        for path in {[str(p) for p in probes]!r}:
            try:
                print('READ', path, open(path).read()[:40].strip())
            except OSError as err:
                print('NOT READABLE', path, err.strerror)
        for folder in ('/run', '/var', '/root', {str(tmp_path)!r}):
            print('LIST', folder, sorted(os.listdir(folder)))
        try:
            open('/proc/sys/kernel/printk_ratelimit_burst', 'w').write('10')
            print('KERNEL SETTING WRITTEN')
        except OSError as err:
            print('KERNEL SETTING REFUSED', err.strerror)
        caps = [line.split()[1] for line in open('/proc/self/status') if line.startswith('CapEff')]
        print('USER', os.getuid(), os.getgid(), caps)
        print('ENV', sorted(os.environ))
        print('HOME', os.environ['HOME'], os.environ.get('LANG'))
    """)
    assert result.exit_code == 0 and ISOLATED in text, text
    assert "0451" not in text, text
    readable = [line for line in text.splitlines() if line.startswith("READ ")]
    assert readable == [f"READ {dataset / 'labels.csv'} image,label\ny0.png,yes".splitlines()[0]], text
    assert "LIST /run []" in text and "LIST /var []" in text
    assert f"LIST {tmp_path} ['dataset', 'ws']" in text  # the other run's folder is not there
    assert "KERNEL SETTING REFUSED Read-only file system" in text
    assert "HOME /home/sandbox C.UTF-8" in text
    uid = SandboxConfig().uid if os.geteuid() == 0 else os.geteuid()  # as root: the sandbox's own uid, no capability
    assert f"USER {uid} {uid if os.geteuid() == 0 else os.getegid()} ['0000000000000000']" in text, text
    for name in (*SECRET_VARIABLES, "PREFECT_API_URL"):
        assert f"'{name}'" not in text


def test_control_characters_in_output_reach_nobody(tmp_path):
    ws = replace(workspace(tmp_path), live_log=tmp_path / "live.log")
    result, text = run(ws, "noisy.py", r"""
        import sys
        sys.stdout.write('\x1b[2J\x1b]0;fake title\x07clear\x1b[31m red\x1b[0m\rprogress\x00\x08\x9b end\tok\n')
    """)
    assert result.exit_code == 0, text
    assert "clear red\nprogress end\tok" in result.output
    log = (tmp_path / "live.log").read_text()
    assert "clear red\nprogress end\tok" in log
    for control in ("\x1b", "\x07", "\x00", "\x08", "\x9b", "\r"):
        assert control not in result.output and control not in log


def test_fork_bomb_is_stopped_and_reported_as_the_process_limit(tmp_path):
    marker = unique_seconds()
    result, text = run(workspace(tmp_path, processes=40), "bomb.py", """
        import os, time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    """, marker)
    assert not result.timed_out and result.duration_s < 10, text
    assert "[stopped by the process limit" in text, text
    assert not leftovers(marker)


def test_endless_output_is_bounded_in_the_result_and_in_the_live_log(tmp_path):
    ws = replace(workspace(tmp_path, file_mib=1), live_log=tmp_path / "logs" / "role-1.log")
    result, text = run(ws, "chatty.py", "while True:\n    print('spam ' * 20)\n", timeout_s=2)
    assert result.timed_out and result.output_chars > 2 * 1024 * 1024, text[:300]
    assert len(result.output) < ws.output_chars + 300 and "[output cut:" in text
    log = ws.live_log.read_bytes()
    assert 1024 * 1024 < len(log) < 1024 * 1024 + 2000 and b"output past the file size limit is not logged" in log
    assert ISOLATED.encode() in log


def test_endless_loop_times_out_and_leaves_no_process(tmp_path):
    marker = unique_seconds()
    result, text = run(workspace(tmp_path), "spin.py", """
        import subprocess, sys
        subprocess.Popen(['sleep', sys.argv[1]])
        while True:
            pass
    """, marker, timeout_s=1.5)
    assert result.timed_out and "TIMED OUT after" in text and "stopped by" not in text, text
    assert not leftovers(marker)


def test_endless_loop_is_stopped_by_the_cpu_limit(tmp_path):
    marker = unique_seconds()
    result, text = run(workspace(tmp_path, cpu_s=1), "spin.py", """
        import subprocess, sys
        subprocess.Popen(['sleep', sys.argv[1]])
        while True:
            pass
    """, marker)
    assert not result.timed_out and result.duration_s < 8, text
    assert "[stopped by the CPU time limit" in text, text
    assert not leftovers(marker)


def test_one_huge_file_is_stopped_by_the_file_size_limit(tmp_path):
    result, text = run(workspace(tmp_path, file_mib=5), "fill.py", """
        with open('big.bin', 'wb') as out:
            while True:
                out.write(b'0' * 1024 * 1024)
    """)
    assert result.exit_code != 0 and "File too large" in text, text
    assert "[stopped by the file size limit: a file reached the limit of 5 MiB]" in text
    assert (tmp_path / "ws" / "big.bin").stat().st_size <= 5 * 1024 * 1024


def test_many_files_are_stopped_by_the_workspace_limit(tmp_path):
    result, text = run(workspace(tmp_path, workspace_mib=20), "flood.py", """
        import time
        for i in range(10_000):
            with open(f'chunk{i}.bin', 'wb') as out:
                out.write(b'0' * 1024 * 1024)
            time.sleep(0.02)
    """)
    assert not result.timed_out and "[stopped by the workspace size limit: the workspace grew by" in text, text
    assert len(list((tmp_path / "ws").glob("chunk*.bin"))) < 200


@pytest.mark.parametrize("how", ["deleted but open", "under a path longer than PATH_MAX"])
def test_hidden_files_count_towards_the_workspace_limit(tmp_path, how):
    code = {"deleted but open": """
        import os, time
        out = open('hidden.bin', 'wb')
        os.remove('hidden.bin')
        for _ in range(60):
            out.write(b'0' * 1024 * 1024)
            out.flush()
            time.sleep(0.02)
        time.sleep(30)
    """, "under a path longer than PATH_MAX": """
        import os, time
        for _ in range(45):  # 45 folders of 100 characters: a path of about 4,600 characters
            name = 'd' * 100
            os.mkdir(name)
            os.chdir(name)
        with open('deep.bin', 'wb') as out:
            for _ in range(60):
                out.write(b'0' * 1024 * 1024)
                out.flush()
                time.sleep(0.02)
        time.sleep(30)
    """}[how]
    result, text = run(workspace(tmp_path, workspace_mib=20, file_mib=200, timeout_s=25), "hide.py", code)
    assert not result.timed_out and "[stopped by the workspace size limit: the workspace grew by" in text, text


def test_shared_memory_counts_towards_the_memory_limit(tmp_path):
    result, text = run(workspace(tmp_path, memory_mib=300, timeout_s=25), "shared.py", """
        import mmap, time
        block = mmap.mmap(-1, 700 * 1024 * 1024, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        print('touched all of it', flush=True)
        time.sleep(30)
    """)
    assert not result.timed_out and "[stopped by the memory limit" in text, text


def test_private_tmp_is_small_and_memory_is_limited(tmp_path):
    ws = workspace(tmp_path, tmp_mib=8, memory_mib=300, file_mib=50)
    result, text = run(ws, "tmpfill.py", "open('/tmp/big', 'wb').write(b'0' * 16 * 1024 * 1024)\n")
    assert "No space left on device" in text and "[stopped by the /tmp size limit" in text, text
    result, text = run(ws, "hog.py", "block = bytearray(600 * 1024 * 1024)\n")
    assert "MemoryError" in text and "[stopped by the memory limit: an allocation was refused past 300 MiB]" in text, text


def test_memory_spread_over_processes_is_stopped(tmp_path):
    """By the memory cgroup where one can be made (the kernel kills in it), else by the watchdog's sum."""
    marker = unique_seconds()
    result, text = run(workspace(tmp_path, memory_mib=300), "hogs.py", """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                break
        block = b'x' * (150 * 1024 * 1024)  # under the per-process limit; four of them are not
        time.sleep(30)
    """, marker)
    assert not result.timed_out and result.duration_s < 15, text
    assert "[stopped by the memory limit:" in text and ("MiB resident, limit 300 MiB]" in text
                                                        or "(shared memory included) reached 300 MiB]" in text), text
    assert not leftovers(marker)


def test_a_tree_that_outlives_the_kernels_memory_kill_is_ended(tmp_path):
    """Children past the memory limit while the root holds little: the kernel (cgroup v1) kills children one by one
    until the rest fit, and the root and a survivor would sleep on to the timeout."""
    marker = unique_seconds()
    result, text = run(workspace(tmp_path, memory_mib=300), "survivor.py", """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                block = b'x' * (150 * 1024 * 1024)
                break
        time.sleep(30)
    """, marker)
    assert not result.timed_out and result.duration_s < 15, text
    assert "[stopped by the memory limit:" in text, text
    assert not leftovers(marker)


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


CONNECT = """
import socket, sys
for address in [('127.0.0.1', int(sys.argv[1]))] + [('192.0.2.1', 80)] * (len(sys.argv) > 2):
    try:
        socket.create_connection(address, timeout=3).close()
        print('CONNECTED', address[0])
    except OSError as err:
        print('CONNECT FAILED', address[0], err.strerror)
"""


def test_no_network_inside_the_sandbox(tmp_path, listener):
    result, text = run(workspace(tmp_path), "phone_home.py", CONNECT, f"{listener} and-outside")
    # the sandbox has a loopback of its own, where nothing listens, and no route anywhere else
    assert "CONNECT FAILED 127.0.0.1 Connection refused" in text and ISOLATED in text, text
    assert "CONNECT FAILED 192.0.2.1 Network is unreachable" in text and "CONNECTED" not in text


def test_without_bwrap_the_result_and_the_log_carry_a_loud_warning(tmp_path, listener):
    ws = replace(workspace(tmp_path, bwrap=str(tmp_path / "no" / "bwrap")), live_log=tmp_path / "logs" / "role-1.log")
    result, text = run(ws, "phone_home.py", CONNECT, str(listener))
    assert "CONNECTED 127.0.0.1" in text  # really unisolated: the control for the test above
    assert f"[WARNING: {NO_SANDBOX_WARNING}" in text and "[sandbox: NONE (" in text, text
    assert NO_SANDBOX_WARNING in ws.live_log.read_text()
    off = replace(ws, sandbox=SandboxConfig("off"))
    assert "sandbox: NONE (sandbox disabled (setting sandbox=off)" in run(off, "ok.py", "print(1)")[1]
    required = replace(ws, sandbox=SandboxConfig("on", str(tmp_path / "no" / "bwrap")))
    with pytest.raises(ToolError, match="install bubblewrap"):
        run_script(required, "ok.py")


KILLED_FLOW = """
import os, sys
from medbuilder.protocol.tools import Workspace, run_script, write_file
from medbuilder.protocol.tools.sandbox import SandboxConfig
ws = Workspace.create(sys.argv[1], output_chars=2000, script_timeout_s=60, sandbox=SandboxConfig(sys.argv[2]))
write_file(ws, 'hang.py', sys.argv[3])
run_script(ws, 'hang.py ' + os.environ['HANG_ARGS'])
"""
HANG = """
import pathlib, subprocess, sys, time
if len(sys.argv) > 2:
    subprocess.Popen(['sleep', sys.argv[1]])
pathlib.Path('ready').touch()
time.sleep(1000)
"""


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_scripts_die_when_the_flow_process_is_killed(tmp_path, mode):
    """With bwrap the whole sandbox dies; without it, PR_SET_PDEATHSIG kills the script (not its children)."""
    marker = unique_seconds()
    args = f"{marker} with-child" if mode == "auto" else marker
    flow = subprocess.Popen([sys.executable, "-c", KILLED_FLOW, str(tmp_path / "ws"), mode, HANG],
                            env={**os.environ, "HANG_ARGS": args})
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ws" / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "ws" / "ready").exists(), "the script never started"
        assert leftovers(marker, wait_s=0)
    finally:
        flow.send_signal(signal.SIGKILL)
        flow.wait()
    assert not leftovers(marker), f"the script outlived the killed flow process (sandbox {mode})"


def test_a_dataset_closed_to_other_users_is_still_read_and_the_result_says_how(tmp_path, dataset):
    """As root: read as root without capabilities (the sandbox uid could not), and the result says so. As
    another user: read as that user, who owns it."""
    dataset.chmod(0o700)
    result, text = run(workspace(tmp_path, [dataset]), "reader.py", f"""
        import os
        print('READ', open({str(dataset / 'labels.csv')!r}).read().splitlines()[0], os.getuid())
    """)
    assert result.exit_code == 0 and f"READ image,label {os.geteuid()}" in text, text
    said = f"as root without capabilities, not as uid {SandboxConfig().uid}: {dataset} is not readable" in text
    assert said == (os.geteuid() == 0), text
