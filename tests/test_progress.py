"""Progress: the training script's progress.json read as untrusted, bars on a terminal (tmux), plain lines
elsewhere, and the training's Prefect progress artifact."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import threading
import time

from flow_helpers import run_in_terminal

from medbuilder.progress import PROGRESS_MAX_BYTES, Steps, TrainingWatch, parse_progress, read_progress
from medbuilder.protocol.templates.spec import COMMON_DIR

NOW = 1_800_000_000.0
GOOD = {"phase": "training", "epoch": 3, "epochs": 4, "batch": 5, "batches": 10, "loss": 0.25, "updated": NOW}


def _engine():
    spec = importlib.util.spec_from_file_location("template_engine", COMMON_DIR / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_values_are_checked():
    found = parse_progress(GOOD)
    assert (found.done, found.total, found.text) == (25, 40, "training epoch 3/4 batch 5/10 loss 0.25")
    caching = {"phase": "caching", "name": "train", "done": 7, "total": 9, "updated": NOW}
    assert parse_progress(caching).fraction == 7 / 9
    for bad in ({**GOOD, "epoch": True}, {**GOOD, "epoch": 5}, {**GOOD, "epochs": "4"}, {**GOOD, "updated": "now"},
                {**GOOD, "phase": "mining"}, {**GOOD, "phase": ["training"]}, {**GOOD, "epoch": -1},
                {**GOOD, "epochs": 10 ** 30}, [GOOD], "text", None, {**GOOD, "updated": float("nan")},
                {"phase": "caching", "done": 1, "total": 0, "updated": NOW}):
        assert parse_progress(bad) is None, bad
    assert parse_progress({**GOOD, "batches": 0}).text == "training epoch 3/4 loss 0.25"  # no batch count: epochs
    for loss in ("0.1", float("inf"), 1e300, True, None):  # a bad loss is left out, the counts still show
        assert parse_progress({**GOOD, "loss": loss}).text == "training epoch 3/4 batch 5/10", loss
    assert parse_progress({**GOOD, "batch": 99}).done == 30  # a batch past the count is capped
    named = parse_progress({"phase": "caching", "name": "../../etc", "done": 1, "total": 2, "updated": NOW})
    assert named.text == "caching data 1/2"  # a name that is not a plain word is not shown


def test_progress_file_is_read_as_untrusted(tmp_path):
    workspace, outside = tmp_path / "ws", tmp_path / "outside.json"
    workspace.mkdir()
    progress = workspace / "progress.json"
    outside.write_text(json.dumps(GOOD))
    assert read_progress(workspace) is None  # none yet
    progress.write_text(json.dumps(GOOD))
    assert read_progress(workspace).done == 25
    progress.write_text("{" * 3000)  # deep nesting
    assert read_progress(workspace) is None
    progress.write_text("\x00\xff garbage")
    assert read_progress(workspace) is None
    progress.write_text(json.dumps({**GOOD, "pad": "x" * PROGRESS_MAX_BYTES}))
    assert read_progress(workspace) is None  # too big
    progress.unlink()
    os.symlink(outside, progress)
    assert read_progress(workspace) is None  # a link is never followed
    progress.unlink()
    os.link(outside, progress)
    assert read_progress(workspace) is None  # nor a hard link to a file elsewhere
    progress.unlink()
    os.mkfifo(progress)
    assert read_progress(workspace) is None  # a FIFO neither blocks nor counts


def test_plain_lines_when_not_a_terminal(capsys, monkeypatch):
    from rich.console import Console

    bar = Steps(3, "reading", console=Console(file=io.StringIO()))
    for _ in range(3):
        bar()
    bar.close()
    assert capsys.readouterr().err.splitlines() == ["reading: 1/3", "reading: 2/3", "reading: 3/3"]  # every step

    bar = Steps(1000, "copying", console=Console(file=io.StringIO()))
    for _ in range(1000):
        bar()
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"copying: {n}/1000" for n in [1, *range(50, 1001, 50)]]  # the first, then one per 5%

    monkeypatch.setenv("TERM", "dumb")  # a terminal that cannot draw a bar gets the lines too
    bar = Steps(2, "epoch 1/2", console=Console(file=io.StringIO(), force_terminal=True), counted=False)
    bar.update(1, what="epoch 1/2 batch 1/1")
    bar.close()
    assert capsys.readouterr().err.splitlines() == ["epoch 1/2 batch 1/1"]


def test_bars_open_together_share_the_terminal():
    """A bench case's training bar opens under the bench's bar: both draw, and the outer one goes on."""
    from rich.console import Console

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    outer = Steps(2, "bench cases", console=terminal)
    inner = Steps(10, "training epoch 1/1", console=terminal)
    inner.update(10)
    inner.close()
    outer()
    outer.close()
    text = screen.getvalue()
    assert "training epoch 1/1" in text and "10/10" in text and "bench cases" in text and "1/2" in text, text
    again = Steps(1, "after", console=terminal)  # the shared display stopped with the last bar
    again()
    again.close()
    assert "1/1" in screen.getvalue()
    Steps(None, "nothing to do", console=terminal).close()  # no total and no step: no bar at all
    assert "nothing to do" not in screen.getvalue()


def test_a_bar_in_a_terminal_for_data_prepare(tmp_path):
    """`medbuilder data prepare` in tmux draws a rich bar that ends full."""
    target = tmp_path / "br35h"
    code, stdout, terminal = run_in_terminal(["data", "prepare", "br35h", "--limit", "15", "--to", str(target)],
                                             {}, tmp_path / "terminal", timeout_s=120)
    assert code == 0 and "br35h ready at" in stdout and "br35h: prepared" in stdout, terminal
    bar = [line for line in terminal.splitlines() if line.startswith("preparing br35h")]
    assert bar and "━" in bar[-1] and "30/30" in bar[-1], terminal


def _cached_loader(engine, workspace, items: int):
    """A real MONAI CacheDataset through the engine's caching_with_progress, in a DataLoader of 2 per batch."""
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import Lambda

    data = [{"x": torch.full((4,), float(i)), "y": torch.tensor([i % 2], dtype=torch.float32)} for i in range(items)]
    dataset = engine.caching_with_progress(CacheDataset)(data, Lambda(lambda d: d), progress=False,
                                                         progress_file=engine.ProgressFile(workspace), name="train")
    return DataLoader(dataset, batch_size=2)


def _train(engine, workspace) -> None:
    """engine.fit for real: 3 epochs of 8 batches on a linear model, a batch slowed to 30 ms so it can be seen."""
    import torch

    model = torch.nn.Linear(4, 1)

    def step(batch):
        time.sleep(0.03)
        return torch.nn.functional.binary_cross_entropy_with_logits(model(batch["x"]), batch["y"]), len(batch["x"])

    engine.fit(model, _cached_loader(engine, workspace, 16), {"epochs": 3, "lr": 1e-3}, workspace, step)


def test_training_progress_reaches_a_prefect_progress_artifact(prefect_api, tmp_path):
    """The engine's fit writes progress.json; the trainer's task polls it into a progress artifact of its task run
    that rises while the training runs (read back through the Prefect client halfway and at the end)."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterTaskRunId, ArtifactFilterType,
                                                FlowRunFilter, TaskRunFilter)
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.context import TaskRunContext

    from medbuilder.tasks.stage_tasks import _progress_artifact

    engine, workspace = _engine(), tmp_path / "workspace"
    (workspace / "checkpoints").mkdir(parents=True)
    (workspace / "progress.json").write_text(json.dumps({**GOOD, "updated": time.time() - 60}))  # an earlier round's
    seen, halfway = [], []

    def artifacts(task_run_id):
        with get_client(sync_client=True) as client:
            return client.read_artifacts(  # every argument given: this client sends a None the server refuses
                artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]),
                                               task_run_id=ArtifactFilterTaskRunId(any_=[task_run_id])),
                flow_run_filter=FlowRunFilter(), task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC,
                limit=5, offset=0)

    @task
    def trainer_stage():
        task_run_id = TaskRunContext.get().task_run.id
        report = _progress_artifact("model_trainer")

        def record(percent, text):
            report(percent, text)
            seen.append((percent, text))
            if 30 <= percent < 100 and not halfway:
                halfway.extend(artifacts(task_run_id))

        watch = TrainingWatch(workspace, report=record, interval_s=0.1)
        with watch:
            worker = threading.Thread(target=_train, args=(engine, workspace))
            worker.start()
            worker.join()
        return task_run_id, watch.last

    @flow
    def build():
        return trainer_stage()

    task_run_id, last = build()
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(set(percents)) >= 3, seen
    assert seen[-1][1].startswith("training epoch 3/3 batch 8/8 loss "), seen  # the earlier round's file not shown
    assert last.phase == "training" and last.done == last.total == 24
    assert len(halfway) == 1 and 30 <= halfway[0].data < 100, halfway  # the artifact itself rose while training
    final = artifacts(task_run_id)
    assert len(final) == 1 and final[0].id == halfway[0].id and final[0].data == 100.0, final
    assert "model_trainer: training epoch 3/3" in final[0].description


def test_the_cache_fills_progress_json(tmp_path):
    engine = _engine()
    loader = _cached_loader(engine, tmp_path, 5)
    found = read_progress(tmp_path)
    assert len(loader.dataset) == 5 and (found.phase, found.done, found.total) == ("caching", 5, 5), found
    assert found.text == "caching train 5/5"


def test_the_runs_page_shows_the_script_progress_of_this_stage(tmp_path):
    """The Runs page's 'now' of a training run: the progress.json written since the stage began, nothing else."""
    from datetime import datetime, timedelta, timezone

    from medbuilder.dashboards import data
    from medbuilder.protocol.artifacts import RunRecord, StageRecord
    from medbuilder.protocol.run_folder import RunFolder

    run = RunFolder.new(tmp_path, "live")
    run.write("run.json", RunRecord(run_id=run.run_id, request="Classify brain MRI", core="offline",
                                    approve="prefect", status="running"))
    started = datetime.now(timezone.utc) - timedelta(seconds=60)
    run.save_stage(StageRecord(stage="model_trainer", status="running", attempts=1, started=started.isoformat()))
    run.workspace.mkdir(exist_ok=True)
    progress = run.workspace / "progress.json"
    progress.write_text(json.dumps({**GOOD, "updated": time.time()}))
    now = data.run_now(run)
    assert now.script.fraction == 25 / 40 and now.text().endswith("· training epoch 3/4 batch 5/10 loss 0.25")
    progress.write_text(json.dumps({**GOOD, "updated": started.timestamp() - 5}))  # an earlier round's
    assert data.run_now(run).script is None
    progress.unlink()
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({**GOOD, "updated": time.time()}))
    progress.symlink_to(outside)
    assert data.run_now(run).script is None
