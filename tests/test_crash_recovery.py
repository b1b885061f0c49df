"""Crash recovery: SIGKILL the real `medbuilder build` process during training and at a gate, then resume.

Real CLI processes, a real Prefect server, real training on 20 real Br35H images.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

import template_data
from flow_helpers import MEDBUILDER, descendants, kill_tree, run_in_terminal, start, wait_for, wait_for_run
from medbuilder.protocol.run_folder import RunFolder

REQUEST = "Classify brain MRI slices as tumour or no tumour"
pytestmark = pytest.mark.slow


EPOCHS = 12  # on 16 training images: a few seconds of training on 2 idle cores


def _env(base: Path, api: str, time_limit_s: str) -> dict:
    return {"PREFECT_API_URL": api, "MEDBUILDER_DATA_DIR": str(base / "data"), "MEDBUILDER_RUNS_DIR": str(base / "runs"),
            "MEDBUILDER_TRAIN_TIME_LIMIT_S": time_limit_s, "MEDBUILDER_TRAIN_MAX_EPOCHS": str(EPOCHS),
            "MEDBUILDER_ECHO_SCRIPTS": "false", "MEDBUILDER_GATE_POLL_S": "1"}


def _poll(predicate, timeout_s: float, what: str, log: Path) -> None:
    """wait_for with a short period: an epoch takes well under a second on idle cores."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def _epochs(run_dir: Path, workspace: str = "workspace") -> list[dict]:
    log = run_dir / workspace / "train_log.jsonl"
    entries = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return entries


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _training_pids(pid: int) -> list[int]:
    """The training's processes below the flow: train.py's, or the Python started ahead that runs it."""
    found = []
    for child in descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"train.py" in command or b"prestarted_python.py" in command:
                found.append(child)
        except OSError:
            continue
    return found


def _pending(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "gates" / "pending.json").read_text())
    except (OSError, ValueError):
        return {}


def _flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id)).state.type.value


def _cli(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MEDBUILDER, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def _kill_leader(proc: subprocess.Popen) -> None:
    """A crash of the flow process: SIGKILL it alone, not its process group."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_sigkill_during_training_resumes_from_last_checkpoint(prefect_api, br35h_small):
    env = _env(br35h_small, prefect_api, "300")
    log = br35h_small / "build.log"
    proc = start(["build", REQUEST, "--approve", "auto"], env, log)
    try:
        run_dir = wait_for_run(br35h_small / "runs", log)
        _poll(lambda: any(e["epoch"] >= 2 for e in _epochs(run_dir)), 240, "two training epochs", log)
        trainers = _training_pids(proc.pid)
        assert trainers, "no train.py process below the flow process"
        old_flow_run = json.loads((run_dir / "run.json").read_text())["flow_run_id"]
        _kill_leader(proc)
        killed_at = time.monotonic()
        wait_for(lambda: not any(_alive(p) for p in trainers), 5, "the training child to die with its flow process")
        died_after = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    last_logged = max(e["epoch"] for e in _epochs(run_dir))
    run = RunFolder(run_dir)
    from medbuilder.lifecycle.recovery import observed_status

    assert run.read_json("run.json")["status"] == "running"
    assert observed_status(run_dir, "running") == "interrupted"
    assert run.read_json("stages/model_trainer.json")["status"] == "running"

    started = time.monotonic()  # in a terminal: the training's progress bar shows there
    code, stdout, terminal = run_in_terminal(["resume", run_dir.name], env, br35h_small / "terminal")
    resume_seconds = time.monotonic() - started
    assert code == 0, stdout[-3000:] + terminal[-3000:]
    assert "status: delivered" in stdout
    bar = [line for line in terminal.splitlines() if "training epoch" in line and "━" in line]
    assert bar and f"epoch {EPOCHS}/{EPOCHS}" in bar[-1], terminal[-3000:]

    training_output = "".join(p.read_text() for p in sorted((run_dir / "logs").glob("model_trainer-*.log")))
    resumed_line = next(line for line in training_output.splitlines() if line.startswith("resumed from epoch"))
    resumed_from = int(resumed_line.split()[3])
    assert last_logged - 1 <= resumed_from <= last_logged  # at most the epoch in progress was lost
    config = json.loads((run_dir / "workspace" / "config.json").read_text())
    epochs = _epochs(run_dir)
    assert config["epochs"] == EPOCHS and [e["epoch"] for e in epochs] == list(range(1, EPOCHS + 1))
    assert [e["resumed_from"] for e in epochs if "resumed_from" in e] == [resumed_from]
    metrics = run.read_json("workspace/metrics.json")
    assert metrics["epochs"] == config["epochs"] and metrics["resumed_from_epoch"] == resumed_from
    assert isinstance(metrics["value"], float) and math.isfinite(metrics["value"]) and 0 <= metrics["value"] <= 1

    stages = {p.stem: json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")}
    assert all(s["status"] == "completed" for s in stages.values()), stages
    assert {name: s["attempts"] for name, s in stages.items()} == {
        "task_manager": 1, "prepare_data": 1, "data_engineer": 1, "module_architect": 1, "model_trainer": 2,
        "evaluate-0": 1, "deliver": 1}
    record = run.read_json("run.json")
    assert record["status"] == "delivered" and record["flow_run_id"] != old_flow_run
    [entry] = run.read_json("interruptions.json")
    assert entry["interrupted_stages"] == ["model_trainer"] and entry["old_flow_run"].startswith("marked CRASHED")
    assert _flow_run_state(old_flow_run) == "CRASHED" and _flow_run_state(record["flow_run_id"]) == "COMPLETED"
    assert (run_dir / "bundle" / "models" / "model.pt").exists()
    trajectories = sorted(p.name for p in (run_dir / "trajectories").iterdir())
    again = _cli(env, "resume", run_dir.name, timeout=300)  # a delivered run: nothing is done again
    assert again.returncode == 0 and sorted(p.name for p in (run_dir / "trajectories").iterdir()) == trajectories
    print(f"\nkilled after epoch {last_logged}; training child gone {died_after:.1f} s after the kill; resumed from "
          f"epoch {resumed_from}; resume to delivery {resume_seconds:.1f} s")


def test_sigkill_at_a_gate_resumes_waiting_at_the_same_gate(prefect_api, br35h_small):
    from medbuilder.cli import app

    env = _env(br35h_small, prefect_api, "3")
    log = br35h_small / "build.log"
    proc = start(["build", REQUEST, "--approve", "prefect"], env, log)
    try:
        run_dir = wait_for_run(br35h_small / "runs", log)
        wait_for(lambda: _pending(run_dir).get("gate") == "dataset-1", 180, "the dataset gate", log)
        old_flow_run = _pending(run_dir)["flow_run_id"]
        # gates/pending.json is written just before the pause: kill once the flow run is paused
        wait_for(lambda: _flow_run_state(old_flow_run) == "PAUSED", 60, "the paused flow run", log)
        _kill_leader(proc)
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    runner = CliRunner()
    lost = runner.invoke(app, ["approve", str(run_dir)])
    assert lost.exit_code == 2 and "flow process is gone" in lost.stderr and "medbuilder resume" in lost.stderr

    resume_log = br35h_small / "resume.log"
    resumed = start(["resume", run_dir.name], env, resume_log)
    try:
        wait_for(lambda: _pending(run_dir).get("flow_run_id") not in (None, old_flow_run), 120,
                 "the resumed run at a gate", resume_log)
        pending = _pending(run_dir)
        record = json.loads((run_dir / "run.json").read_text())
        assert pending["gate"] == "dataset-1" and pending["flow_run_id"] == record["flow_run_id"]
        assert _flow_run_state(old_flow_run) == "CRASHED" and _flow_run_state(pending["flow_run_id"]) == "PAUSED"
        bad = runner.invoke(app, ["approve", str(run_dir), "--action", "maybe"])
        assert bad.exit_code == 2 and "action (--action)" in bad.stderr and "allowed: approve, pick, correct, reject" in bad.stderr
        assert _pending(run_dir)["gate"] == "dataset-1"  # still waiting after a bad answer
        answered = _cli(env, "approve", run_dir.name, "--who", "dr-a")
        assert answered.returncode == 0, answered.stderr
        wait_for(lambda: _pending(run_dir).get("gate") == "review-0", 300, "the review gate", resume_log)
        no_feedback = _cli(env, "approve", run_dir.name, "--action", "refine")
        assert no_feedback.returncode == 2 and "needs 'feedback'" in no_feedback.stderr
        answered = _cli(env, "approve", run_dir.name, "--action", "reject", "--reason", "test run", "--who", "dr-b")
        assert answered.returncode == 0, answered.stderr
        assert resumed.wait(timeout=180) == 0, resume_log.read_text()[-3000:]
    finally:
        if resumed.poll() is None:
            kill_tree(resumed)
    run = RunFolder(run_dir)
    assert "status: rejected" in resume_log.read_text()
    dataset, review = run.read_json("decisions/dataset-1.json"), run.read_json("decisions/review-0.json")
    assert (dataset["action"], dataset["who"], dataset["via"]) == ("approve", "dr-a", "cli")
    assert (review["action"], review["who"], review["reason"], review["via"]) == ("reject", "dr-b", "test run", "cli")
    assert dataset["os_user"] == review["os_user"] == getpass.getuser()  # the OS account that answered
    assert run.read_json("stages/task_manager.json")["attempts"] == 1
    [entry] = run.read_json("interruptions.json")
    assert entry["gate_was_waiting"] == "dataset-1" and entry["old_flow_run"] == "marked CRASHED (was PAUSED)"
    assert run.read_json("run.json")["status"] == "rejected" and not run.exists("bundle")


def _train(ws: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", "--config", "config.json"], cwd=ws, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _log(ws: Path) -> list[dict]:
    return _epochs(ws.parent, ws.name)


def test_segmentation_training_killed_and_resumed(tmp_path):
    """The segmentation template's train.py, SIGKILLed after two epochs and started again, continues
    from its last checkpoint with a changed time limit (not part of the configuration hash)."""
    from medbuilder.protocol.templates import fill_template

    index = template_data.shapes_2d_index(tmp_path / "index", n_train=6, n_test=2, size=32)
    ws = tmp_path / "ws"
    fill_template("segmentation", ws, {"index_dir": str(index), "spatial_dims": 2, "patch_size": None,
                                       "image_size": [32, 32], "channels": [8, 16, 32], "epochs": 12, "batch_size": 2,
                                       "num_threads": 2, "bootstrap": 50})
    proc = _train(ws)
    deadline = time.monotonic() + 240
    while not ((ws / "train_log.jsonl").exists() and len(_log(ws)) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-2000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    logged = len(_log(ws))
    config = json.loads((ws / "config.json").read_text())
    (ws / "config.json").write_text(json.dumps({**config, "time_limit_s": 600}))
    again = _train(ws)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output[-2000:]
    resumed_from = int(output.split("resumed from epoch ")[1].split()[0])
    assert logged - 1 <= resumed_from <= logged
    assert [e["epoch"] for e in _log(ws)] == list(range(1, 13))
    metrics = json.loads((ws / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == resumed_from and metrics["epochs"] == 12
    assert 0 <= metrics["value"] <= 1


def _engine():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol" / "templates" / "_common"))
    import engine

    return engine


class _Crash(Exception):
    pass


def _fit(out: Path, lr: float = 0.01, crash_at: int | None = None) -> dict:
    import torch

    engine = _engine()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    epoch = {"n": 0}

    def step(batch):
        if crash_at is not None and epoch["n"] == crash_at * len(data):
            raise _Crash()
        epoch["n"] += 1
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y), len(y)

    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return engine.fit(model, data, {"epochs": 4, "lr": lr}, out, step)


def test_engine_resumes_only_an_unfinished_training_of_the_same_config(tmp_path, capsys):
    with pytest.raises(_Crash):
        _fit(tmp_path, crash_at=2)  # a crash during epoch 3: last.pt holds epoch 2
    assert _fit(tmp_path)["resumed_from_epoch"] == 2
    assert [e["epoch"] for e in _log(tmp_path)] == [1, 2, 3, 4]
    assert _fit(tmp_path)["resumed_from_epoch"] is None  # last.pt of a finished training: train afresh
    with pytest.raises(_Crash):
        _fit(tmp_path, crash_at=1)
    capsys.readouterr()
    result = _fit(tmp_path, lr=0.02)  # another configuration: its last.pt is not resumed
    assert result["resumed_from_epoch"] is None and result["epochs"] == 4
    assert "not resuming: " in capsys.readouterr().out
    assert [e["epoch"] for e in _log(tmp_path)] == [1, 2, 3, 4]


def test_resume_stops_a_process_left_in_the_workspace(tmp_path):
    from medbuilder.lifecycle.recovery import stop_workspace_processes
    from medbuilder.proctree import working_in

    leftover = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    assert working_in(tmp_path) == [leftover.pid]
    assert stop_workspace_processes(tmp_path) == [leftover.pid]
    assert leftover.wait(timeout=5) == -signal.SIGKILL and working_in(tmp_path) == []
