"""Interpretability report and shortcut measures (medbuilder.review.interpret / shortcuts / saliency).

A tiny model trained on the generated drain set (tests/test_refine_strategies.py: the
label is a faint blob, a bright line agrees with the label in 90% of training images
and 50% of test images) learns the line: its measures must show it. A roi case on a
few real Br35H slices checks the blank-outside-the-head counterfactual.

One change to the drain set: every image (and twin) gets one white pixel in a corner.
Without it the line is the brightest thing only in the images that show it, so the
template's min-max scaling darkens every lined image as a whole and the model learns
that global brightness (GradCAM then spreads evenly: the attribution share cannot see
a shortcut that works through intensity normalisation, while the flip rate does).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medbuilder.protocol.templates import fill_template, run_training
from medbuilder.review import interpret, roi_blanking, shortcuts
from medbuilder.review.saliency import last_conv_layer, normalise

sys.path.insert(0, str(Path(__file__).parent))
from test_refine_strategies import FAST, SIBLINGS, drain_set  # noqa: E402

sys.path.remove(str(Path(__file__).parent))

OBJECTIVE = {"confounder": "drain", "measure": "counterfactual_flip_rate", "max_reliance": 0.25,
             "max_metric_drop": 0.02, "words": "must not rely on drains"}


@pytest.fixture(scope="module", autouse=True)
def restore_template_modules():
    """predict.py leaves the workspace's template modules in sys.modules: put the old ones back."""
    saved = {name: sys.modules.pop(name) for name in SIBLINGS if name in sys.modules}
    yield
    for name in SIBLINGS:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def pin_intensity_range(index: Path) -> Path:
    """One white corner pixel in every image and twin (see the module docstring)."""
    for split in ("train", "test"):
        for r in json.loads((index / f"{split}.json").read_text()):
            for key in ("image", "counterfactual"):
                if r.get(key):
                    array = np.array(Image.open(r[key]))
                    array[0, 0] = 255
                    Image.fromarray(array).save(r[key])
    return index


@pytest.fixture(scope="module")
def shortcut_round(tmp_path_factory):
    """(report, out_dir, workspace, index): a shortcut model trained 6 epochs, then interpreted."""
    root = tmp_path_factory.mktemp("interpret")
    index = pin_intensity_range(drain_set(root / "data", n_train=160, n_test=60, seed=1))
    ws = root / "ws"
    fill_template("diagnosis", ws, {**FAST, "index_dir": str(index), "epochs": 6})
    run_training(ws, timeout_s=240, echo=False)
    started = time.time()
    report = interpret.interpret_round(ws, index, root / "report", objective=OBJECTIVE)
    report["wall_seconds"] = time.time() - started
    print("interpret_round:", json.dumps({k: report[k] for k in ("measures", "seconds")}, default=str))
    print("ECE", report["calibration"]["ece"], "wall seconds", report["wall_seconds"])
    return report, root / "report", ws, index


def test_report_files_and_json_match(shortcut_round):
    report, out, _, _ = shortcut_round
    for name in ("interpretability.md", "interpretability.json", "reliability.png", "saliency-true-positive.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "interpretability.json").read_text())
    assert saved["measures"] == json.loads(json.dumps(report["measures"]))
    markdown = (out / "interpretability.md").read_text()
    for heading in ("## Objective", "## Saliency samples", "## Calibration", "## Subgroups", "## Shortcut measures"):
        assert heading in markdown
    for name, definition in shortcuts.DEFINITIONS.items():
        assert f"| {name} |" in markdown and definition in markdown
    for category, fig in report["figures"]["saliency"].items():
        if report["samples"][category]:
            assert fig and (out / fig).is_file() and f"]({fig})" in markdown
    assert 0 < sum(len(v) for v in report["samples"].values()) <= 18
    assert report["published"] is False  # outside a Prefect run: nothing published, no error
    assert report["wall_seconds"] < 60


def test_shortcut_model_flips_with_the_counterfactual_twin(shortcut_round):
    m = shortcut_round[0]["measures"]["counterfactual_flip_rate"]
    assert m["n"] == 54  # every 10th of 60 test records has no twin
    assert m["value"] >= 0.5 and m["mean_abs_score_change"] > 0.2
    status = shortcut_round[0]["objective_status"]
    assert status["status"] == "not met" and status["value"] == m["value"]
    assert "**not met**" in (shortcut_round[1] / "interpretability.md").read_text()


def test_gradcam_mass_concentrates_on_the_line(shortcut_round):
    m = shortcut_round[0]["measures"]["attribution_share"]
    assert m["n"] >= 20 and 0 < m["area_fraction"] < 0.1
    # GradCAM at the last conv layer is a 6x6 grid here: a 2 px line can hold at most ~1/4 of
    # its cell's mass, so a pure shortcut gives about twice the area, not 1.0
    assert m["value"] > 1.5 * m["area_fraction"], m


def test_confounded_negatives_are_called_positive_more_often(shortcut_round):
    m = shortcut_round[0]["measures"]["confounded_fpr"]
    assert m["n_confounded"] > 5 and m["n_clean"] > 5
    assert m["value"] > m["fpr_clean"] + 0.2, m


def test_subgroup_gap_calibration_and_groups(shortcut_round):
    report = shortcut_round[0]
    gap = report["measures"]["subgroup_gap"]
    assert gap["value"] is not None and np.isfinite(gap["value"]) and gap["n_present"] + gap["n_absent"] == 60
    calib = report["calibration"]
    assert 0.0 <= calib["ece"] <= 1.0 and sum(b["n"] for b in calib["bins"]) == 60 and len(calib["bins"]) == 10
    assert set(report["subgroups"]) == {"drain", "no-drain"}
    assert all(g["n"] == 30 and 0 <= g["accuracy"] <= 1 for g in report["subgroups"].values())


def test_mask_follows_the_image_through_preprocessing(shortcut_round):
    """The prepared image equals predict.py's, and the mask lands on the bright line."""
    _, _, ws, index = shortcut_round
    predictor = interpret.load_predictor(ws, ws)
    records = [r for r in json.loads((index / "test.json").read_text()) if r.get("confounder_mask") and r["confounder"]]
    for r in records[:6]:
        image, coverage = shortcuts.prepare_with_mask(predictor, r["image"], r["confounder_mask"])
        assert torch.equal(image, predictor.prepare(r["image"]))
        assert coverage.shape == image.shape[1:] and 0 < float(coverage.mean()) < 0.1
        assert float((image[0] * coverage).sum() / coverage.sum()) > 0.9  # the line is the brightest thing


def test_objective_status_and_helpers():
    measures = {"subgroup_gap": {"value": -0.3, "reason": None}, "confounded_fpr": {"value": None, "reason": "why"}}
    gap = {"measure": "subgroup_gap", "max_reliance": 0.1}
    assert interpret.objective_status(gap, measures)["status"] == "not met"  # a gap either way is reliance
    assert interpret.objective_status({**gap, "max_reliance": 0.4}, measures)["status"] == "met"
    missing = interpret.objective_status({"measure": "confounded_fpr", "max_reliance": 0.1}, measures)
    assert missing["status"] == "not measurable" and missing["reason"] == "why"
    assert interpret.objective_status(None, measures) is None
    assert interpret.artifact_key(Path("/x/Round 2_B")) == "interpretability-round-2-b"
    maps = normalise(torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]]))
    assert torch.allclose(maps[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]])) and float(maps[1].abs().max()) == 0
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3)),
                              torch.nn.Flatten(), torch.nn.LazyLinear(2))
    assert last_conv_layer(net) == "1.0"
    calib = shortcuts.calibration([{"label": "yes", "prediction": "yes", "score": 0.95},
                                   {"label": "no", "prediction": "yes", "score": 0.95}], "yes")
    assert calib["ece"] == pytest.approx(0.45)


def test_roi_counterfactual_blanks_outside_the_head_on_real_br35h(tmp_path):
    from medbuilder.protocol.confounders import head_mask
    from medbuilder.protocol.datasets import prepare, reference_index

    root = prepare("br35h", tmp_path / "br35h", limit=4, echo=lambda _: None)
    reference_index("br35h", root, "diagnosis").write(tmp_path / "index")
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {**FAST, "index_dir": str(tmp_path / "index"), "image_size": [64, 64],
                                    "epochs": 1, "val_fraction": 0.0, "batch_size": 4})
    run_training(ws, timeout_s=120, echo=False)
    objective = {"measure": "attribution_share", "max_reliance": 0.25, "confounder": "text"}
    report = interpret.interpret_round(ws, tmp_path / "index", tmp_path / "report", objective=objective, roi="head",
                                       max_images=2)
    n_test = report["n_test"]
    flips = report["measures"]["counterfactual_flip_rate"]
    blanked = sorted((tmp_path / "report" / "counterfactuals").glob("*.png"))
    assert n_test >= 1 and n_test == flips["n"] and len(blanked) == min(n_test, roi_blanking.EXAMPLE_COUNTERFACTUALS)
    # one epoch on 8 images: the model may predict one class throughout, and then the rate is withheld
    assert (0 <= flips["value"] <= 1) if flips["value"] is not None else "predicts one class" in flips["reason"]
    assert "blanked outside the head" in flips["made_by"]
    originals = {Path(r["image"]).stem: r["image"] for r in json.loads((tmp_path / "index" / "test.json").read_text())}
    for path in blanked:  # written as <case number>_<original stem>.png
        original_path = originals[path.stem.split("_", 1)[1]]
        original = np.asarray(Image.open(original_path).convert("L")).astype(np.float32)
        got = np.asarray(Image.open(path).convert("L")).astype(np.float32)
        head = head_mask((original - original.min()) / (original.max() - original.min()))
        assert got.shape == original.shape and head.any() and (~head).any()
        assert float(np.abs(got[~head]).max()) == 0 and np.allclose(got[head], original[head], atol=1)
    # in memory, the blanked image is what the model would see had the file been blank outside the head
    predictor = interpret.load_predictor(ws, ws)
    records = json.loads((tmp_path / "index" / "test.json").read_text())
    in_memory, _ = roi_blanking.blank_outside_roi(predictor, records, "head", tmp_path / "again")
    for (original_path, prepared), path in zip(in_memory, blanked):
        assert torch.allclose(prepared, predictor.prepare(path), atol=1e-6), original_path
    share = report["measures"]["attribution_share"]
    assert share["value"] is not None and 0 <= share["value"] <= 1 and share["where"] == "outside the head region"
    assert report["objective_status"]["status"] in ("met", "not met")


def test_channel_mean_gives_numpys_mean_over_the_last_axis():
    """The region detector's grey image of a colour picture: the same values as array.mean(axis=-1)."""
    from medbuilder.review.roi_blanking import _channel_mean

    rng = np.random.default_rng(0)
    for shape, scale in [((64, 48, 3), 255.0), ((31, 7, 4), 1.0), ((16, 16, 3), 1e-3)]:
        array = (rng.random(shape) * scale).astype(np.float32)
        assert np.array_equal(_channel_mean(array), array.mean(axis=-1))
