"""Delivery: MONAI bundles of really trained (tiny) rounds, loaded and run in a fresh process.

One run per template (diagnosis and anomaly detection on real Br35H images, segmentation
on generated 3D spheres, report generation on generated chest X-ray reports) is trained
for one epoch, snapshotted, carded and exported once for the module. Every bundle is
then loaded with MONAI's ConfigParser in ONE fresh Python process, with the run's
workspace moved away (so nothing but the bundle can be used), and its predictions are
compared with the ones train.py made for the same test files. At the end, the diagnosis bundle is
validated externally (`medbuilder evaluate`) on held-out Br35H scans laid out another way.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import delivery_fixtures  # noqa: E402
from conftest import REPO  # noqa: E402

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


# Runs in a fresh interpreter, on copies of the bundles alone: MONAI's own bundle tools, as a MONAI user runs them
# (verify_metadata against the bundle's MONAI schema file, offline; verify_net_in_out; the standard inference
# workflow's properties; and monai.bundle.run, the function `python -m monai.bundle run` calls).
MONAI_TOOLS_SCRIPT = r"""
import json, os, sys
from monai.bundle import ConfigWorkflow, run, verify_metadata, verify_net_in_out

jobs, out = json.loads(sys.argv[1]), {}
for task, job in jobs["tasks"].items():
    os.chdir(job["bundle"])
    verify_metadata(meta_file="configs/metadata.json", filepath="configs/schema.json", hash_val=jobs["md5"])
    verify_net_in_out(net_id="network_def", meta_file="configs/metadata.json", config_file="configs/inference.json")
    workflow = ConfigWorkflow(config_file="configs/inference.json", workflow_type="infer")
    workflow.initialize()
    out[task] = {"missing_properties": workflow.check_properties()}
    if job.get("folder"):  # a folder of images
        run(config_file="configs/inference.json", dataset_dir=job["folder"])
    elif job.get("run"):  # a list of files
        run(config_file="configs/inference.json", input_files=job["files"])
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def monai_tools(runs, tmp_path_factory):
    """MONAI's tools on a copy of every bundle (no workspace, no run folder): the diagnosis bundle through
    `python -m monai.bundle run` itself, the others through monai.bundle.run in one process with the checks."""
    from medbuilder.delivery.metadata import MONAI_SCHEMA_MD5

    tmp = tmp_path_factory.mktemp("monai-tools")
    jobs = {"md5": MONAI_SCHEMA_MD5, "tasks": {}}
    for task, (_, index, bundle, _) in runs.items():
        copy = tmp / f"{task}-bundle"
        shutil.copytree(bundle, copy)
        jobs["tasks"][task] = {"bundle": str(copy), "files": [r.image for r in (index.test + index.train)[:2]],
                               "run": task != "diagnosis"}
    folder = tmp / "anomaly-inputs"
    folder.mkdir()
    for file in jobs["tasks"]["anomaly_detection"]["files"]:
        shutil.copyfile(file, folder / Path(file).name)
    jobs["tasks"]["anomaly_detection"]["folder"] = str(folder)
    diag = jobs["tasks"]["diagnosis"]
    cli = subprocess.Popen([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                            "--input_files", json.dumps(diag["files"]), "--output_dir", "cli-eval"], cwd=diag["bundle"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run([sys.executable, "-c", MONAI_TOOLS_SCRIPT, json.dumps(jobs)], cwd=tmp,
                          capture_output=True, text=True, timeout=300)
    cli_out = cli.communicate(timeout=300)[0]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert cli.returncode == 0, cli_out[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for task, job in jobs["tasks"].items():
        output = "cli-eval" if task == "diagnosis" else "eval"
        lines = (Path(job["bundle"]) / output / "predictions.jsonl").read_text().splitlines()
        result[task]["predictions"] = [json.loads(line) for line in lines]
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


def test_monai_bundle_tools_pass_on_every_bundle(runs, monai_tools):
    """verify_metadata (MONAI's schema, offline), verify_net_in_out and the infer workflow's properties hold on
    every task's bundle, and the packages the bundle's code imports are all in its metadata."""
    from medbuilder.delivery.metadata import MONAI_SCHEMA_FILE, MONAI_SCHEMA_MD5

    assert hashlib.md5(MONAI_SCHEMA_FILE.read_bytes()).hexdigest() == MONAI_SCHEMA_MD5
    for task, (_, _, bundle, _) in runs.items():
        assert monai_tools[task]["missing_properties"] == [], task
        meta = json.loads((bundle / "configs/metadata.json").read_text())
        assert {"scipy", "pytorch-ignite", "fire", "nibabel", "pillow"} <= set(meta["required_packages_version"]), task
        assert (bundle / "configs/schema.json").read_bytes() == MONAI_SCHEMA_FILE.read_bytes()


def test_monai_bundle_run_predicts_as_the_predictor(runs, predicted, monai_tools):
    """`python -m monai.bundle run` (diagnosis) and monai.bundle.run (the others; anomaly detection on a folder)
    write one line per input file,
    the same result the bundle's predictor gives for it (masks: the same voxel counts)."""
    for task in TASKS:  # by file name: the anomaly detection bundle ran on a folder of copies
        expected = {Path(r["file"]).name: r for r in predicted["tasks"][task]["results"]}
        got = {Path(r["file"]).name: r for r in monai_tools[task]["predictions"]}
        assert set(got) == set(expected), task
        for file, r in got.items():
            if task == "segmentation":
                assert r["voxel_counts"] == expected[file]["voxel_counts"]
                assert Path(r["mask"]).name == Path(expected[file]["mask"]).name
            elif task == "diagnosis":
                assert r["probabilities"] == pytest.approx(expected[file]["probabilities"], abs=1e-5)
            elif task == "anomaly_detection":
                assert r["score"] == pytest.approx(expected[file]["score"], rel=1e-5)
            else:
                assert r["report"] == expected[file]["report"]


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


# ----------------------------------------------------------------------------- external validation
# The diagnosis bundle above on the held-out Br35H scans, re-laid as another release would lay them (labels.csv +
# images/, other label names), through the offline Data Engineer's layout inference and the shared indexer; and a
# user-written set holding copies of the run's own images, which must be set aside.

MAP = {"tumour": "yes", "normal": "no"}


@pytest.fixture(scope="module")
def delivered(runs):
    """The diagnosis run of this module (a Br35H model, exported), with a run.json and 10 held-out images
    per class of br35h-heldout in its data folder."""
    from medbuilder.protocol.artifacts import RunRecord
    from medbuilder.protocol.datasets import prepare

    run, index, _, _ = runs["diagnosis"]
    root = run.root.parent.parent
    run.write("run.json", RunRecord(run_id=run.run_id, request=delivery_fixtures.REQUESTS["diagnosis"],
                                    core="offline", approve="auto", status="delivered"))
    prepare("br35h-heldout", root / "data" / "br35h-heldout", limit=10, echo=lambda _: None)
    return root, run, index


@pytest.fixture
def settings_for(delivered, monkeypatch):
    """cards(extra_card=None): settings with the module's data folder and a copy of the datacards (+ one)."""
    from medbuilder.settings import get_settings

    root = delivered[0]
    monkeypatch.setenv("MEDBUILDER_DATA_DIR", str(root / "data"))

    def cards(extra: dict | None = None) -> Path:
        folder = root / "cards"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(REPO / "datacards", folder)
        if extra:
            (folder / f"{extra['name']}.yaml").write_text(yaml.safe_dump(extra, sort_keys=False))
        monkeypatch.setenv("MEDBUILDER_DATACARDS_DIR", str(folder))
        get_settings.cache_clear()  # settings are read once per process otherwise
        return folder

    yield cards
    get_settings.cache_clear()


def test_heldout_set_is_disjoint_from_br35h():
    from medbuilder.protocol.datasets import br35h, br35h_heldout

    held = {Path(p) for p in br35h_heldout.sources()}
    kept = set(br35h.sources())
    assert len(held) == 300 and not held & kept and len(held | kept) == 3000
    assert {p.parent.name for p in held} == {"yes", "no"}


def test_external_report_on_the_heldout_set(delivered, settings_for):
    from sklearn.metrics import roc_auc_score

    from medbuilder.stages.external import validate_external

    _, run, _ = delivered
    settings_for()
    result = validate_external(run, "br35h-heldout", MAP)
    folder = run.root / "external" / "br35h-heldout"
    assert result["n"] == 20 and result["per_class"] == {"no": 10, "yes": 10} and result["set_aside"] == []
    assert result["label_map"] == {"normal": "no", "tumour": "yes"}
    assert any("labels.csv" in line for line in result["layout"])  # inferred from the files, not given
    # medbuilder's figure, recomputed here from what it wrote: the cases' labels and the bundle's scores
    cases = json.loads((folder / "index" / "test.json").read_text())
    predictions = {p["image"]: p for p in json.loads((folder / "model" / "predictions.json").read_text())}
    truth = [r["label"] == "yes" for r in cases]
    scores = [predictions[r["image"]]["probabilities"]["yes"] for r in cases]
    assert result["value"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    assert {r["external_label"] for r in cases} == {"normal", "tumour"}
    assert result["unit"] in ("image", "duplicate group") and result["n_units"] >= 2
    assert result["ci95"] is None or result["ci95"][0] <= result["value"] <= result["ci95"][1]
    assert result["internal"]["value"] is not None
    assert (folder / "report" / "interpretability.md").is_file()
    assert set(result["interpretability"]["measures"]) >= {"attribution_share", "counterfactual_flip_rate"}
    assert result["interpretability"]["calibration_ece"] is not None
    report = (folder / "external_validation.md").read_text()
    assert "held out from the source of br35h" in report and "internal test split" in report
    for card in (run.root / "model_card.md", run.root / "bundle" / "docs" / "README.md"):
        text = card.read_text()
        assert "## External validation" in text and "on br35h-heldout:" in text


def test_label_names_that_differ_need_a_map(delivered, settings_for):
    from medbuilder.review.external_data import ExternalDataError
    from medbuilder.stages.external import validate_external

    _, run, _ = delivered
    settings_for()
    with pytest.raises(ExternalDataError, match="--label-map normal=no --label-map tumour=yes"):
        validate_external(run, "br35h-heldout", {})
    with pytest.raises(ExternalDataError, match="are not classes of the model"):
        validate_external(run, "br35h-heldout", {"tumour": "maybe", "normal": "no"})
    with pytest.raises(ExternalDataError, match="the dataset the model was built on"):
        validate_external(run, "br35h", {})


def test_copies_of_the_runs_own_images_are_set_aside(delivered, settings_for):
    from medbuilder.stages.external import validate_external

    root, run, index = delivered
    site = root / "data" / "other-site"
    held = root / "data" / "br35h-heldout"
    rows = [line.split(",") for line in (held / "labels.csv").read_text().splitlines()[1:]]
    for i, (image, finding) in enumerate(rows[:8]):
        (site / MAP[finding]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(held / image, site / MAP[finding] / f"h{i}.jpg")
    trained = [r for r in index.train if r.label == "yes"][:2]
    shutil.copyfile(trained[0].image, site / "yes" / "same-bytes.jpg")
    with Image.open(trained[1].image) as im:  # a mirrored, re-encoded copy
        im.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(site / "yes" / "mirrored.jpg", quality=90)
    settings_for({"name": "other-site", "title": "Brain MRI slices from another folder", "path": str(site),
                  "description": "Axial brain MRI slices in one folder per class (no, yes), written by a test.",
                  "tasks": ["diagnosis"], "modality": "MRI", "dimension": "2D", "anatomy": "brain",
                  "label_names": ["no", "yes"], "file_formats": ["jpg"], "licence": "test data",
                  "provenance": "real", "source": "copies of Br35H files", "use": "validation"})
    result = validate_external(run, "other-site")
    aside = {Path(a["image"]).name: a["why"] for a in result["set_aside"]}
    assert set(aside) == {"same-bytes.jpg", "mirrored.jpg"}, aside
    assert all("a copy of the run's own image" in why for why in aside.values())
    assert result["n"] == 8 and result["n_indexed"] == 10


def test_validation_cards_are_never_chosen_to_train():
    from medbuilder.agents.planning import draft_plan as _plan
    from medbuilder.protocol.registry import Registry

    cards = list(Registry(REPO / "datacards").cards().values())
    plan = _plan("Classify brain MRI slices as tumour or no tumour", cards, None)
    assert plan.dataset == "br35h"
    held = next(c for c in plan.candidates if c.name == "br35h-heldout")
    assert not held.fits
    named = _plan("Classify brain MRI slices as tumour or no tumour", cards, "br35h-heldout")
    assert named.status == "no_fit" and any("held out for external validation" in r for r in named.reasons)


def test_cli_names_the_problem(delivered, settings_for):
    from typer.testing import CliRunner

    from medbuilder.cli import app

    _, run, _ = delivered
    settings_for()
    out = CliRunner().invoke(app, ["evaluate", str(run.root), "--dataset", "no-such-card"])
    assert out.exit_code == 2 and "unknown dataset 'no-such-card'" in out.output
    out = CliRunner().invoke(app, ["evaluate", str(run.root), "--dataset", "br35h-heldout", "-m", "tumour"])
    assert out.exit_code == 2 and "is not EXTERNAL=MODEL" in out.output
    assert "Traceback" not in out.output
