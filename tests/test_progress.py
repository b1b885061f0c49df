"""Progress: the training script's progress.json read as untrusted, bars on a terminal (tmux), plain lines
elsewhere, and the training's Prefect progress artifact."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time

from flow_helpers import run_in_terminal

from medbuilder.progress import PROGRESS_MAX_BYTES, Steps, TrainingWatch, parse_progress, read_progress
from medbuilder.protocol.templates.spec import COMMON_DIR

NOW = 1_800_000_000.0


def _engine():
    spec = importlib.util.spec_from_file_location("template_engine", COMMON_DIR / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_file_is_read_as_untrusted(tmp_path):
    good = {"phase": "training", "epoch": 3, "epochs": 4, "batch": 5, "batches": 10, "updated": NOW}
    found = parse_progress(good)
    assert (found.done, found.total, found.text) == (25, 40, "training epoch 3/4 batch 5/10")
    assert parse_progress({"phase": "caching", "name": "train", "done": 7, "total": 9, "updated": NOW}).fraction == 7 / 9
    for bad in ({**good, "epoch": True}, {**good, "epoch": 5}, {**good, "epochs": "4"}, {**good, "updated": "now"},
                {**good, "phase": "mining"}, {**good, "epoch": -1}, [good], "text", None,
                {"phase": "caching", "done": 1, "total": 0, "updated": NOW}, {**good, "updated": float("nan")}):
        assert parse_progress(bad) is None, bad
    assert parse_progress({**good, "batches": 0}).text == "training epoch 3/4"  # no batch count: epochs only
    named = parse_progress({"phase": "caching", "name": "../../etc", "done": 1, "total": 2, "updated": NOW})
    assert named.text == "caching data 1/2"  # a name that is not a plain word is not shown

    workspace = tmp_path / "ws"
    workspace.mkdir()
    assert read_progress(workspace) is None
    (workspace / "progress.json").write_text(json.dumps(good))
    assert read_progress(workspace).done == 25
    (workspace / "progress.json").write_text("{" * 100_000)  # deep nesting / garbage
    assert read_progress(workspace) is None
    (workspace / "progress.json").write_text(json.dumps({**good, "pad": "x" * PROGRESS_MAX_BYTES}))
    assert read_progress(workspace) is None  # too big
    (workspace / "progress.json").unlink()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(good))
    os.symlink(secret, workspace / "progress.json")
    assert read_progress(workspace) is None  # a link is never followed


def test_plain_lines_when_not_a_terminal(capsys):
    from rich.console import Console

    bar = Steps(3, "reading", console=Console(file=open(os.devnull, "w")))
    for _ in range(3):
        bar()
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "reading: 1/3" and lines[-1] == "reading: 3/3"


def test_a_bar_in_a_terminal_for_data_prepare(tmp_path):
    """`medbuilder data prepare` in tmux draws a rich bar that ends full."""
    target = tmp_path / "br35h"
    code, stdout, terminal = run_in_terminal(["data", "prepare", "br35h", "--limit", "15", "--to", str(target)],
                                             {}, tmp_path / "terminal", timeout_s=120)
    assert code == 0 and "br35h ready at" in stdout and "br35h: prepared" in stdout, terminal
    bar = [line for line in terminal.splitlines() if line.startswith("preparing br35h")]
    assert bar and "━" in bar[-1] and "30/30" in bar[-1], terminal


def test_training_progress_reaches_a_prefect_progress_artifact(prefect_api, tmp_path):
    """A task that trains reports the engine's progress.json (written by the engine's own ProgressFile) to a
    progress artifact of its task run, rising as the epochs go."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    from medbuilder.tasks.stage_tasks import _progress_artifact

    engine, workspace = _engine(), tmp_path / "workspace"
    workspace.mkdir()
    seen = []

    def train() -> None:
        progress = engine.ProgressFile(workspace)
        for epoch in range(1, 4):
            progress.write(force=True, phase="training", epoch=epoch, epochs=3, batch=4, batches=4)
            time.sleep(0.6)

    @task
    def trainer_stage() -> None:
        report = _progress_artifact("model_trainer")

        def record(percent, text):
            seen.append(percent)
            report(percent, text)

        with TrainingWatch(workspace, report=record, interval_s=0.2):
            worker = threading.Thread(target=train)
            worker.start()
            worker.join()

    @flow
    def build() -> None:
        trainer_stage()

    build()
    assert seen[-1] == 100.0 and seen == sorted(seen) and len(seen) >= 2, seen
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(  # every argument given: this client sends a None the server refuses
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])), flow_run_filter=FlowRunFilter(),
            task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=20, offset=0)
    assert any(a.data == 100.0 and "training epoch 3/3" in (a.description or "") for a in artifacts), artifacts
