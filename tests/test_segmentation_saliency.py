"""Occlusion saliency for segmentation models: the method on a model whose answer is known, and a
trained 2D model through the report."""

from __future__ import annotations

import json

import torch

import template_data
from medbuilder.protocol.templates import fill_template, run_training
from medbuilder.review.segmentation_saliency import occlusion_map, outside_share

FAST = {"num_threads": 2, "device": "cpu", "bootstrap": 50}


def pixelwise_logits(x: torch.Tensor) -> torch.Tensor:
    """A segmenter that looks at each pixel alone: foreground where the pixel is bright."""
    return torch.cat([torch.zeros_like(x), 20.0 * (x - 0.5)], dim=1)


def test_occlusion_finds_only_the_pixels_a_pixelwise_model_uses():
    image = torch.zeros(1, 32, 32)
    image[0, 8:16, 8:16] = 1.0
    saliency, region = occlusion_map(pixelwise_logits, image, grid=8)
    assert region.sum() == 64 and saliency.max() == 1.0
    assert outside_share(saliency, region) == 0.0
    assert float(saliency[8:16, 8:16].min()) > 0.0 and float(saliency[20:, 20:].max()) == 0.0


def test_occlusion_sees_a_shortcut_outside_the_structure():
    """A model that segments mid-grey pixels only while a bright marker sits in a corner: hiding the
    marker's block loses the structure, so that block carries the most saliency."""
    def marker_logits(x):
        marker = x[..., :4, :4].mean()
        return torch.cat([torch.zeros_like(x), 40.0 * (0.1 - (x - 0.6).abs()) + 20.0 * (marker - 0.5)], dim=1)

    image = torch.zeros(1, 32, 32)
    image[0, 16:24, 16:24] = 0.6
    image[0, :4, :4] = 1.0
    saliency, region = occlusion_map(marker_logits, image, grid=8)
    assert int(region.sum()) == 64 and not bool(region[:4, :4].any())
    assert outside_share(saliency, region) > 0.3 and float(saliency[:4, :4].min()) == 1.0


def test_report_on_a_trained_2d_model_at_the_review_gate(tmp_path):
    """A trained 2D segmentation round evaluated as the flow does: report files, gate section, card section."""
    from medbuilder.protocol.artifacts import Plan
    from medbuilder.protocol.run_folder import RunFolder
    from medbuilder.review.compare import card_sections
    from medbuilder.review.evaluate import evaluate_round
    from medbuilder.review.verified_metric import fix_test_split

    run = RunFolder(tmp_path / "run")
    index = template_data.shapes_2d_index(run.index_dir, n_train=8, n_test=3, size=48)
    run.write("plan.json", Plan(status="ok", request="segment the shapes", dataset="shapes", task="segmentation",
                                dimension="2D", metric="dice"))
    fix_test_split(run)  # as the flow does at the dataset gate
    fill_template("segmentation", run.workspace, {"index_dir": str(index), "spatial_dims": 2, "patch_size": None,
                                                  "image_size": [48, 48], "channels": [8, 16, 32], "epochs": 6,
                                                  "batch_size": 4, **FAST})
    run_training(run.workspace, timeout_s=240, echo=False)
    summary = evaluate_round(run, 0)
    info = summary["interpretability"]
    assert info["kind"] == "segmentation" and "error" not in info and len(info["cases"]) == 3
    seconds = summary["seconds"]  # the occlusion report's forwards are counted as model inference
    assert 0 < seconds["model_inference"] <= seconds["evaluation"] and seconds["interpretability_report"] > 0
    for case in info["cases"]:
        share = case["saliency outside the structure"]
        assert (share is None) == (not case["structure found"]) and (share is None or 0.0 <= share <= 1.0)
    folder = run.root / "report" / "round-0"
    assert json.loads((folder / "interpretability.json").read_text())["cases"] == info["cases"]
    assert "Occlusion saliency" in summary["sections"][0] and "Occlusion saliency" in card_sections(run, 0)[
        "Interpretability"]
    if any(c["structure found"] for c in info["cases"]):
        assert (folder / "saliency-segmentation.png").stat().st_size > 1000
