"""Each template filled from a small real or generated index, batch-checked and trained for real.

Every test runs the workspace the way the agents do: `python dataloader.py --config
config.json` (the Module Architect's batch check) and `python train.py --config
config.json` through run_training, then checks metrics.json, predictions.json, the
per-epoch log and the checkpoints.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from medbuilder.protocol.templates import fill_template, run_training

sys.path.insert(0, str(Path(__file__).parent))
import template_data  # noqa: E402

FAST = {"num_threads": 2, "bootstrap": 200, "device": "auto"}


def batch_check(ws: Path) -> str:
    proc = subprocess.run([sys.executable, "dataloader.py", "--config", "config.json"], cwd=ws,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "dataloader OK" in proc.stdout
    return proc.stdout


def check_outputs(ws: Path, metrics: dict, task: str, metric: str, epochs: int) -> None:
    assert metrics["task"] == task and metrics["metric"] == metric
    value = metrics["value"]
    assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, value
    for key in ("ci95", "n_train", "n_test", "epochs", "final_train_loss", "train_seconds", "images_per_second",
                "peak_rss_mb"):
        assert key in metrics, key
    assert metrics["n_train"] > 0 and metrics["n_test"] > 0 and metrics["epochs"] == epochs
    assert math.isfinite(metrics["final_train_loss"]) and metrics["images_per_second"] > 0
    assert len(metrics["ci95"]) == 2
    log = [json.loads(line) for line in (ws / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == list(range(1, epochs + 1))
    predictions = json.loads((ws / "predictions.json").read_text())
    assert len(predictions) == metrics["n_test"] and all("id" in p for p in predictions)
    assert (ws / "checkpoints" / "model.pt").is_file() and (ws / "checkpoints" / "last.pt").is_file()
    import torch

    ckpt = torch.load(ws / "checkpoints" / "model.pt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"] and ckpt["config"]["epochs"] == epochs
    assert "epoch 1/" in (ws / "train_output.log").read_text()  # progress was printed per epoch


def test_diagnosis_2d_on_real_br35h(tmp_path):
    index = template_data.br35h_index(tmp_path / "index", "diagnosis", per_class=20, groups=True)
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {"index_dir": str(index), "image_size": [64, 64], "epochs": 2, "batch_size": 8,
                                    "channels": [8, 16, 32, 64], "class_weights": "balanced", **FAST})
    out = batch_check(ws)
    assert "image: shape (8, 1, 64, 64) dtype torch.float32" in out and "label: shape (8,) dtype torch.int64" in out
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "diagnosis", "auroc", 2)
    assert metrics["n_test"] == 8 and metrics["n_train"] + metrics["n_val"] == 32
    assert {"accuracy", "sensitivity", "specificity"} <= set(metrics) and metrics["positive_label"] == "yes"
    assert (ws / "checkpoints" / "best.pt").is_file()
    first = json.loads((ws / "predictions.json").read_text())[0]
    assert Path(first["image"]).is_file() and set(first["probabilities"]) == {"no", "yes"}
    assert first["group"] in metrics["subgroups"] and sum(g["n"] for g in metrics["subgroups"].values()) == 8


def test_diagnosis_3d_on_generated_volumes(tmp_path):
    index = template_data.blob_volumes_index(tmp_path / "index", n_train=12, n_test=6, size=16)
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {"index_dir": str(index), "spatial_dims": 3, "image_size": [16, 16, 16],
                                    "channels": [8, 16, 32], "epochs": 2, "batch_size": 4, "val_fraction": 0.0,
                                    **FAST})
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "diagnosis", "auroc", 2)
    assert metrics["n_val"] == 0 and metrics["best_epoch"] == 2  # no validation: the last epoch is kept


def test_segmentation_3d_on_generated_spheres(tmp_path):
    index = template_data.spheres_index(tmp_path / "index", n_train=4, n_test=2, size=32)
    ws = tmp_path / "ws"
    fill_template("segmentation", ws, {"index_dir": str(index), "spatial_dims": 3, "patch_size": [16, 16, 16],
                                       "samples_per_image": 2, "channels": [8, 16, 32], "epochs": 2, "batch_size": 2,
                                       **FAST})
    out = batch_check(ws)
    assert "image: shape (4, 1, 16, 16, 16) dtype torch.float32" in out
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "segmentation", "dice", 2)
    assert len(metrics["per_case_dice"]) == 2 and metrics["n_test"] == 2
    masks = sorted((ws / "predictions").glob("*.nii.gz"))
    assert len(masks) == 2
    import nibabel as nib

    assert nib.load(str(masks[0])).shape == (32, 32, 32)


def test_segmentation_2d_on_generated_pngs(tmp_path):
    index = template_data.shapes_2d_index(tmp_path / "index", n_train=8, n_test=3, size=48)
    ws = tmp_path / "ws"
    fill_template("segmentation", ws, {"index_dir": str(index), "spatial_dims": 2, "patch_size": None,
                                       "image_size": [48, 48], "channels": [8, 16, 32], "epochs": 2, "batch_size": 4,
                                       **FAST})
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "segmentation", "dice", 2)
    assert len(list((ws / "predictions").glob("*.png"))) == 3


def test_anomaly_detection_normal_only_on_real_br35h(tmp_path):
    index = template_data.br35h_index(tmp_path / "index", "anomaly_detection", per_class=20)
    ws = tmp_path / "ws"
    fill_template("anomaly_detection", ws, {"index_dir": str(index), "image_size": [32, 32], "channels": [8, 16, 32],
                                            "latent_dim": 32, "epochs": 2, "batch_size": 8, **FAST})
    out = batch_check(ws)
    assert "normal label: 'no'" in out and "train: 14 items" in out  # 16 normal training images, 2 for validation
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "anomaly_detection", "auroc", 2)
    assert metrics["n_train"] == 14 and metrics["n_test"] == 8 and metrics["n_test_anomalous"] == 4
    assert set(metrics["auroc_by_score"]) == {"mse", "mae", "top_mse"}


def test_report_generation_on_generated_pairs(tmp_path):
    index = template_data.quadrant_report_index(tmp_path / "index", n_train=48, n_test=8, size=32)
    ws = tmp_path / "ws"
    fill_template("report_generation", ws, {"index_dir": str(index), "image_size": [32, 32],
                                            "encoder_channels": [8, 16, 32], "hidden_dim": 64, "embed_dim": 32,
                                            "epochs": 2, "batch_size": 16, **FAST})
    out = batch_check(ws)
    assert "tokens: shape (16, 62) dtype torch.int64" in out
    metrics = run_training(ws, timeout_s=240)
    check_outputs(ws, metrics, "report_generation", "bleu4", 2)
    assert metrics["vocab_size"] > 10 and (ws / "vocab.json").is_file()
    first = json.loads((ws / "predictions.json").read_text())[0]
    assert {"reference", "generated", "sentence_bleu4"} <= set(first)


@pytest.mark.slow
def test_segmentation_3d_learns_spheres(tmp_path):
    """A sensible Dice on held-out generated spheres within about a minute on 2 cores."""
    index = template_data.spheres_index(tmp_path / "index", n_train=6, n_test=3, size=32)
    ws = tmp_path / "ws"
    fill_template("segmentation", ws, {"index_dir": str(index), "spatial_dims": 3, "patch_size": [32, 32, 32],
                                       "samples_per_image": 1, "channels": [16, 32, 64], "epochs": 25,
                                       "batch_size": 2, "lr": 0.01, "flip_axes": [0, 1, 2], **FAST})
    metrics = run_training(ws, timeout_s=300)
    assert metrics["value"] > 0.8, metrics["per_case_dice"]


@pytest.mark.slow
def test_diagnosis_learns_br35h(tmp_path):
    """Above-chance AUROC on held-out real Br35H from 160 training images in well under a minute."""
    index = template_data.br35h_index(tmp_path / "index", "diagnosis", per_class=100)
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {"index_dir": str(index), "image_size": [64, 64], "epochs": 8, "batch_size": 16,
                                    **FAST})
    metrics = run_training(ws, timeout_s=300)
    assert metrics["value"] > 0.8 and metrics["n_test"] == 40
