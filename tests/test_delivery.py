"""Delivery: MONAI bundles of really trained (tiny) rounds, loaded and run in a fresh process.

One run per template (diagnosis and anomaly detection on real Br35H images, segmentation
on generated 3D spheres, report generation on generated chest X-ray reports) is trained
for one epoch, snapshotted, carded and exported once for the module. Every bundle is
then loaded with MONAI's ConfigParser in ONE fresh Python process, with the run's
workspace moved away (so nothing but the bundle can be used), and its predictions are
compared with the ones train.py made for the same test files.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import delivery_fixtures  # noqa: E402

TASKS = ("diagnosis", "anomaly_detection", "segmentation", "report_generation")

# Runs in a fresh interpreter: loads every bundle with ConfigParser (through predict_run, and once
# by hand), predicts, and reports which files the loaded code came from.
PREDICT_SCRIPT = r"""
import json, sys
from pathlib import Path

jobs = json.loads(sys.argv[1])
from medbuilder.delivery.predict import load_bundle, predict_run

out = {"sys_path": list(sys.path), "tasks": {}}
predictors = {}
for task, job in jobs["tasks"].items():
    results = predict_run(job["run"], job["files"], output_dir=jobs["masks"])
    out["tasks"][task] = {"results": results}
    predictors[task] = load_bundle(Path(job["run"]) / "bundle", output_dir=jobs["masks"])
for task, predictor in predictors.items():  # after all four loaded: each kept its own template code
    out["tasks"][task]["code"] = [type(predictor).__init__.__globals__["__file__"],
                                  predictor.prepare.__globals__["inference_transforms"].__globals__[
                                      "deterministic_transforms"].__globals__["__file__"]]

from monai.bundle import ConfigParser
diag = jobs["tasks"]["diagnosis"]
parser = ConfigParser()
parser.read_config(str(Path(diag["run"]) / "bundle" / "configs" / "inference.json"))
parser["bundle_root"] = str(Path(diag["run"]) / "bundle")
parser["input_files"] = diag["files"]
out["by_hand"] = parser.get_parsed_content("predictions")
out["network_def"] = type(parser.get_parsed_content("network_def")).__name__
try:
    predict_run(diag["run"], [jobs["unreadable"]])
except ValueError as err:
    out["unreadable_error"] = str(err)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """task -> (RunFolder, DataIndex, bundle path, card text), trained two at a time."""
    from medbuilder.delivery import export_bundle, render_card

    root = tmp_path_factory.mktemp("delivery")
    for task in TASKS:
        delivery_fixtures.prepare_data(root, task)
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = dict(zip(TASKS, pool.map(lambda t: delivery_fixtures.make_run(root, t), TASKS)))
    out = {}
    for task, (run, index) in made.items():
        card = render_card(run.root, 0)
        out[task] = (run, index, export_bundle(run.root, 0, card), card)
    return out


def _round_predictions(run) -> dict[str, dict]:
    return {p["image"]: p for p in json.loads((run.root / "rounds/0/predictions.json").read_text())}


@pytest.fixture(scope="module")
def predicted(runs, tmp_path_factory):
    """The fresh-process predictions of every bundle, and the CLI's output in a copied workspace."""
    tmp = tmp_path_factory.mktemp("predict")
    unreadable = tmp / "broken.jpg"
    unreadable.write_text("not an image")
    jobs = {"masks": str(tmp / "masks"), "unreadable": str(unreadable),
            "tasks": {task: {"run": str(run.root), "files": [r.image for r in (index.test + index.train)[:2]]}
                      for task, (run, index, _, _) in runs.items()}}
    # the CLI, in a copy of the diagnosis workspace (run beside the bundle process)
    ws = runs["diagnosis"][0].workspace
    ws_copy = tmp / "ws"
    shutil.copytree(ws, ws_copy, ignore=shutil.ignore_patterns("index", "__pycache__"))
    cli_files = jobs["tasks"]["diagnosis"]["files"]
    cli = subprocess.Popen([sys.executable, "predict.py", "--config", "config.json", "--checkpoint",
                            "checkpoints/model.pt", *cli_files], cwd=ws_copy, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    hidden = []
    try:
        for run, _, _, _ in runs.values():  # the bundles must work without their workspace
            hidden.append((run.workspace, run.workspace.with_name("workspace.hidden")))
            run.workspace.rename(hidden[-1][1])
        proc = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, json.dumps(jobs)], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
    finally:
        for original, moved in hidden:
            moved.rename(original)
        cli_out, cli_err = cli.communicate(timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert cli.returncode == 0, cli_out[-2000:] + cli_err[-2000:]
    result["cli"] = [json.loads(line) for line in cli_out.splitlines() if line.startswith("{")]
    return result


# ----------------------------------------------------------------------------- bundle and metadata


def test_bundle_tree_and_metadata_schema(runs):
    import torch

    from medbuilder.delivery import check_bundle

    for task, (run, _, bundle, card) in runs.items():
        assert bundle == run.root / "bundle"
        assert check_bundle(bundle) == [], task
        for rel in ("models/model_extras.json", "scripts/dataloader.py", "scripts/model.py", "scripts/common.py"):
            assert (bundle / rel).is_file(), (task, rel)
        assert (bundle / "docs/README.md").read_text() == card
        state = torch.load(bundle / "models/model.pt", map_location="cpu", weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())  # a plain state dict
        inference = json.loads((bundle / "configs/inference.json").read_text())
        assert {"bundle_root", "network_def", "network", "preprocessing", "predictor"} <= set(inference)
        meta = json.loads((bundle / "configs/metadata.json").read_text())
        assert meta["medbuilder"]["task"] == task and meta["version"] == "1.0.0"
        assert "approved by dr test" in meta["changelog"]["1.0.0"]
        for key in ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
                    "channel_def"):
            assert key in meta["network_data_format"]["inputs"]["image"], (task, key)
    vocab = json.loads((runs["report_generation"][2] / "models/model_extras.json").read_text())["vocab"]
    assert vocab[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and len(vocab) > 10


def test_metadata_schema_rejects_bad_metadata(runs):
    from medbuilder.delivery import MetadataError, validate_metadata

    meta = json.loads((runs["diagnosis"][2] / "configs/metadata.json").read_text())
    validate_metadata(meta)
    with pytest.raises(MetadataError, match="network_data_format"):
        validate_metadata({k: v for k, v in meta.items() if k != "network_data_format"})
    bad = json.loads(json.dumps(meta))
    bad["network_data_format"]["inputs"]["image"]["num_channels"] = "one"
    with pytest.raises(MetadataError, match="num_channels"):
        validate_metadata(bad)


# ----------------------------------------------------------------------------- predictions, fresh process


def test_fresh_process_uses_only_the_bundles(runs, predicted):
    assert not [p for p in predicted["sys_path"] if "workspace" in p or "templates" in p]
    for task, (run, _, bundle, _) in runs.items():
        for file in predicted["tasks"][task]["code"]:  # medbuilder's own code, checked equal to scripts/
            assert Path(file).parent == run.root / "trusted_code" / f"bundle-{task}", (task, file)
    assert predicted["network_def"] == "CompactCNN"


def test_diagnosis_predictions_match_training(runs, predicted):
    run = runs["diagnosis"][0]
    reference = _round_predictions(run)
    results = predicted["tasks"]["diagnosis"]["results"]
    assert len(results) == 2
    for r in results:
        probs = r["probabilities"]
        assert set(probs) == {"no", "yes"} and math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
        assert r["prediction"] == max(probs, key=probs.get)
        assert probs == pytest.approx(reference[r["file"]]["probabilities"], abs=1e-4)
    assert predicted["by_hand"] == results  # ConfigParser's "predictions" item, input_files set by hand
    assert [r["probabilities"] for r in predicted["cli"]] == [r["probabilities"] for r in results]


def test_anomaly_scores_match_training(runs, predicted):
    reference = _round_predictions(runs["anomaly_detection"][0])
    for r in predicted["tasks"]["anomaly_detection"]["results"]:
        assert math.isfinite(r["score"]) and r["score_kind"] == "mae"  # the template's default score
        assert r["score"] == pytest.approx(reference[r["file"]]["score"], rel=1e-4)
        assert r["threshold"] is None and "no operating threshold" in r["threshold_note"]


def test_segmentation_masks_in_input_grid(runs, predicted):
    import nibabel as nib
    import numpy as np

    reference = _round_predictions(runs["segmentation"][0])
    for r in predicted["tasks"]["segmentation"]["results"]:
        source, mask = nib.load(r["file"]), nib.load(r["mask"])
        assert Path(r["mask"]).parent.name == "masks" and r["mask_space"] == "input"
        assert mask.shape == source.shape == tuple(r["shape"])
        assert np.allclose(mask.affine, source.affine)
        values = np.asarray(mask.dataobj)
        assert set(np.unique(values).tolist()) <= {0, 1}
        assert sum(r["voxel_counts"].values()) == values.size
        assert r["voxel_counts"]["sphere"] == int((values == 1).sum()) == r["foreground_voxels"]
        if r["file"] in reference:  # train.py counted voxels in the 2 mm grid: 8 input voxels each
            coarse = reference[r["file"]]["pred_voxels"] * 8
            assert abs(r["foreground_voxels"] - coarse) <= 0.15 * max(coarse, 1)


def test_report_generation_text(runs, predicted):
    reference = _round_predictions(runs["report_generation"][0])
    for r in predicted["tasks"]["report_generation"]["results"]:
        assert isinstance(r["report"], str) and r["report"].strip()
        assert r["report"] == reference[r["file"]]["generated"]


def test_unreadable_file_is_named(predicted):
    assert "broken.jpg" in predicted["unreadable_error"] and "cannot read" in predicted["unreadable_error"]


# ----------------------------------------------------------------------------- model card, errors


def test_model_card_has_request_metric_interval_and_limits(runs):
    from medbuilder.delivery import render_card

    run = runs["diagnosis"][0]
    metrics = json.loads((run.root / "rounds/0/metrics.json").read_text())
    card = runs["diagnosis"][3]
    assert delivery_fixtures.REQUESTS["diagnosis"] in card
    lo, hi = metrics["ci95"]
    assert f"AUROC: {metrics['value']:.3f}** (95% CI {lo:.3f} to {hi:.3f}" in card
    assert f"percentile bootstrap over independent {metrics['unit']}s" in card and metrics["units_note"] in card
    assert "## Acquisition shortcut check" in card and "metadata reaches AUROC" in card
    assert "sensitivity" in card and "specificity" in card and "NOT a medical device" in card
    assert f"test: {metrics['n_test']}" in card and "near-duplicate copies" in card
    assert "| review-0 | approve | dr test | auto |" in card
    seg_card = runs["segmentation"][3]
    assert "GENERATED" in seg_card and "Dice" in seg_card
    assert "No operating threshold" in runs["anomaly_detection"][3]
    extra = render_card(run.root, 0, {"Shortcut measures": "Occlusion of burnt-in text: AUROC drop 0.01."})
    assert "## Shortcut measures\n\nOcclusion of burnt-in text" in extra


def test_predict_without_bundle_says_what_to_do(tmp_path):
    from medbuilder.delivery import NoBundleError, predict_run

    run = tmp_path / "runs" / "run-x"
    run.mkdir(parents=True)
    with pytest.raises(NoBundleError, match="no delivered model.*approve its review gate"):
        predict_run(run, [tmp_path / "a.jpg"])


def test_export_without_evaluated_round_says_what_to_do(tmp_path):
    from medbuilder.delivery import BundleError, export_bundle

    run = tmp_path / "run-y"
    run.mkdir()
    with pytest.raises(BundleError, match="evaluate the round first"):
        export_bundle(run, 0, "# card")
