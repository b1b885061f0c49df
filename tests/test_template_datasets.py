"""Each template trains on its shipped dataset through the CLI and writes its metric.

The shipped sets not trained elsewhere (Br35H is: test_templates_training.py), one or two epochs: this
checks the wiring datacard -> prepare -> reference split -> fill -> train, not
the figures (those are in the README, measured on full runs).
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from medbuilder.cli import app

runner = CliRunner()

# Diagnosis and anomaly detection on real Br35H are trained in test_templates_training.py (and through the
# flow in test_flow.py); here the CLI path is checked on the other shipped sets.
CASES = [
    ("segmentation", "synth-seg3d", None, "dice"),
    ("segmentation", "brain-mask-3d", None, "dice"),
    ("diagnosis", "synth-cxr-reports", None, "auroc"),
    ("report_generation", "synth-cxr-reports", None, "bleu4"),
]


@pytest.mark.slow
@pytest.mark.parametrize("task, dataset, limit, metric", CASES, ids=[f"{t}-{d}" for t, d, *_ in CASES])
def test_template_trains_on_shipped_dataset(data_env, task, dataset, limit, metric):
    prepare = ["data", "prepare", dataset] + (["--limit", str(limit)] if limit else [])
    result = runner.invoke(app, prepare)
    assert result.exit_code == 0, result.output
    workdir = data_env / "runs" / f"{task}-{dataset}"
    train = ["template", "train", task, "--dataset", dataset, "--workdir", str(workdir),
             "--set", "epochs=1", "--set", "bootstrap=50"]
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    metrics = json.loads((workdir / "workspace" / "metrics.json").read_text())
    assert metrics["metric"] == metric and math.isfinite(metrics["value"]) and 0 <= metrics["value"] <= 1
    assert (workdir / "workspace" / "checkpoints" / "model.pt").exists()
    assert f"test {metric} =" in result.output
