"""The metric a clinician approves is medbuilder's: computed on the host from the predictions, on the test split
fixed at the dataset gate, with the template's own definitions. A faked metrics.json, a changed test split and
predictions that do not cover the split are caught."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.verified_metric import fix_test_split, verified_metrics, verify

LABELS = {"no": 0, "yes": 1}


def _run(tmp_path, n: int = 40, seed: int = 0) -> tuple[RunFolder, list[dict]]:
    """A run whose workspace holds an index, config.json and the predictions a training would write."""
    rng = np.random.default_rng(seed)
    run = RunFolder.new(tmp_path / "runs")
    records = [{"image": f"/data/img{i:03d}.jpg", "label": "yes" if i % 2 else "no"} for i in range(n)]
    run.index_dir.mkdir(parents=True)
    (run.index_dir / "test.json").write_text(json.dumps(records))
    (run.index_dir / "train.json").write_text(json.dumps(records[:4]))
    (run.index_dir / "label_dict.json").write_text(json.dumps(LABELS))
    (run.workspace / "config.json").write_text(json.dumps({"index_dir": str(run.index_dir), "output_dir": ".",
                                                            "seed": 0, "bootstrap": 200}))
    predictions = []
    for r in records:
        p_yes = float(np.clip(rng.normal(0.65 if r["label"] == "yes" else 0.35, 0.2), 0, 1))
        predictions.append({"image": r["image"], "label": r["label"], "score": p_yes,
                            "probabilities": {"no": 1 - p_yes, "yes": p_yes}})
    (run.workspace / "predictions.json").write_text(json.dumps(predictions))
    fix_test_split(run)
    return run, predictions


def _auroc(records, predictions) -> float:
    pos = [p["probabilities"]["yes"] for p, r in zip(predictions, records) if r["label"] == "yes"]
    neg = [p["probabilities"]["yes"] for p, r in zip(predictions, records) if r["label"] == "no"]
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg]))


def test_the_figure_is_recomputed_and_a_faked_one_is_refused(tmp_path):
    run, predictions = _run(tmp_path)
    records = json.loads((run.root / "fixed_split" / "test.json").read_text())
    truth = _auroc(records, predictions)
    honest = verify(run, run.workspace, "diagnosis", {"value": round(truth, 4)})
    assert honest["problems"] == [] and honest["value"] == pytest.approx(truth)
    assert honest["ci95"][0] <= truth <= honest["ci95"][1] and honest["n_test"] == 40
    faked = verify(run, run.workspace, "diagnosis", {"value": 0.99})
    assert any(f"reports auroc = 0.99, but the predictions on the fixed test split give {truth:.4f}" in p
               for p in faked["problems"])
    shown = verified_metrics({"value": 0.99, "metric": "auroc", "epochs": 3}, faked)
    assert shown["value"] == pytest.approx(truth) and shown["reported_value"] == 0.99 and shown["epochs"] == 3


def test_labels_come_from_the_fixed_split_not_from_the_predictions(tmp_path):
    run, predictions = _run(tmp_path)
    truth = verify(run, run.workspace, "diagnosis", None)["value"]
    flipped = [{**p, "label": "no" if p["label"] == "yes" else "yes"} for p in predictions]
    (run.workspace / "predictions.json").write_text(json.dumps(flipped))
    assert verify(run, run.workspace, "diagnosis", None)["value"] == pytest.approx(truth)


def test_a_test_split_changed_after_the_gate_does_not_count(tmp_path):
    run, predictions = _run(tmp_path)
    easy = [{"image": "/data/easy.jpg", "label": "yes"}]
    (run.index_dir / "test.json").write_text(json.dumps(easy))  # the workspace's index, rewritten
    (run.workspace / "predictions.json").write_text(json.dumps(
        [{"image": "/data/easy.jpg", "probabilities": {"no": 0.0, "yes": 1.0}}]))
    checked = verify(run, run.workspace, "diagnosis", {"value": 1.0})
    assert any("40 fixed test images have no prediction" in p for p in checked["problems"])
    assert any("outside the fixed test split" in p for p in checked["problems"])
    (run.root / "fixed_split" / "test.json").write_text(json.dumps(easy))  # the fixed copy itself
    tampered = verify(run, run.workspace, "diagnosis", {"value": 1.0})
    assert any("changed after it was fixed" in p for p in tampered["problems"])


def test_predictions_that_are_a_link_or_not_numbers_are_refused(tmp_path):
    run, predictions = _run(tmp_path)
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps(predictions))
    (run.workspace / "predictions.json").unlink()
    (run.workspace / "predictions.json").symlink_to(secret)
    assert any("is a link" in p for p in verify(run, run.workspace, "diagnosis", None)["problems"])
    predictions[0]["probabilities"]["yes"] = "high"
    (run.workspace / "predictions.json").unlink()
    (run.workspace / "predictions.json").write_text(json.dumps(predictions))
    assert any("is not a finite number" in p for p in verify(run, run.workspace, "diagnosis", None)["problems"])


def test_a_faked_metrics_json_fails_the_model_trainers_check(tmp_path):
    from medbuilder.agents.roles.base import RoleContext
    from medbuilder.agents.roles.model_trainer import check
    from medbuilder.protocol.artifacts import Plan
    from medbuilder.settings import Settings

    run, predictions = _run(tmp_path)
    (run.workspace / "checkpoints").mkdir()
    (run.workspace / "checkpoints" / "model.pt").write_bytes(b"weights")
    (run.workspace / "metrics.json").write_text(json.dumps({"metric": "auroc", "value": 0.999,
                                                            "final_train_loss": 0.1}))
    plan = Plan(status="ok", request="tumour or not", dataset="br35h", task="diagnosis", metric="auroc")
    ctx = RoleContext(run, Settings(), "tumour or not", 1, None, plan, None)
    problems = check(ctx)
    assert len(problems) == 1 and "reports auroc = 0.999, but the predictions on the fixed test split give" in \
        problems[0] and "do not edit metrics.json" in problems[0]
    assert run.read_json("metric_check.json")["reported_value"] == 0.999
