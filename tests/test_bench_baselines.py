"""The standard-recipe baselines (benchmarks/baselines/): each trains whole epochs within its wall-clock budget
on real Br35H slices or generated volumes and prints one JSON line; a folder without the index is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import template_data
from medbuilder import REPO_ROOT

BASELINES = REPO_ROOT / "benchmarks" / "baselines"


def _baseline(task: str, config: dict, index, tmp_path, budget: float) -> subprocess.CompletedProcess:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, str(BASELINES / f"{task}.py"), "--config", str(path), "--index-dir",
                           str(index), "--time-budget", str(budget), "--threads", "1"],
                          capture_output=True, text=True, timeout=300, cwd=BASELINES)


def _line(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_anomaly_baseline_trains_on_normals_within_its_budget(tmp_path):
    index = template_data.br35h_index(tmp_path / "index", "anomaly_detection", per_class=6)
    # only data facts are read: a build's own model and epochs must not leak into the standard recipe
    out = _line(_baseline("anomaly_detection", {"spatial_dims": 2, "in_channels": 1, "epochs": 1, "model": "x"},
                          index, tmp_path, budget=20))
    train = json.loads((index / "train.json").read_text())
    assert out["metric"] == "auroc" and 0.0 <= out["value"] <= 1.0 and "AutoEncoder" in out["recipe"]
    assert out["n_train"] == sum(r["label"] == "no" for r in train) and out["epochs"] > 1
    assert out["seconds"] <= 20 * 1.05 and out["over_budget"] is (out["seconds"] > 20)


def test_segmentation_baseline_cuts_its_epoch_short_on_a_tiny_budget(tmp_path):
    index = template_data.spheres_index(tmp_path, n_train=2, n_test=1, size=32)
    out = _line(_baseline("segmentation", {"spatial_dims": 3, "in_channels": 1, "num_classes": 2}, index, tmp_path,
                          budget=0.01))
    # a budget gone before the first batch ends: one batch, a quarter of an epoch (2 volumes x 4 patches, batches of 2)
    assert out["metric"] == "dice" and out["batches"] == 1 and out["epochs"] == 0.25
    assert out["over_budget"] is (out["seconds"] > 0.01)
    assert out["patch"] == [32, 32, 32] and len(out["per_case_dice"]) == 1


@pytest.mark.parametrize("task", ["diagnosis", "report_generation"])
def test_a_folder_without_the_index_names_it_and_the_fix(tmp_path, task):
    done = _baseline(task, {"spatial_dims": 2}, tmp_path / "nowhere", tmp_path, budget=5)
    assert done.returncode != 0 and "has no train.json or test.json" in done.stderr
    assert "workspace/index" in done.stderr and "Traceback" not in done.stderr
