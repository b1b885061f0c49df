"""The acquisition-shortcut audit: a metadata-only model, cross-validated by unit, finds a planted size
shortcut, finds none where there is none, and runs on real Br35H and on the generated drain set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medbuilder.protocol.artifacts import RunFolder
from medbuilder.review.acquisition import border_width, features
from medbuilder.review.metadata_audit import AUDIT_FILE, audit_lines, audit_records


def test_border_width_is_the_uniform_margin():
    image = np.zeros((100, 100), dtype=np.uint8)
    image[10:90, 20:80] = np.random.default_rng(0).integers(50, 255, (80, 60))
    assert border_width(image) == pytest.approx((0.10 + 0.10 + 0.20 + 0.20) / 4, abs=0.02)


def _generated(tmp_path, size_follows_label: bool, n: int = 60) -> list[dict]:
    """Generated noise images; with size_follows_label the 'yes' images are padded to a wider canvas."""
    rng = np.random.default_rng(1)
    records = []
    for i in range(n):
        label = "yes" if i % 2 else "no"
        width = (160 if label == "yes" else 128) if size_follows_label else int(rng.choice([128, 160]))
        pixels = rng.integers(0, 255, (128, width), dtype=np.uint8)
        path = tmp_path / f"{i:03d}.png"
        Image.fromarray(pixels).save(path)
        records.append({"image": str(path), "label": label, "duplicate_group": i})
    return records


def test_a_planted_size_shortcut_is_found_and_its_absence_is_not_invented(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    planted = audit_records(_generated(tmp_path / "a", True), {"no": 0, "yes": 1}, "yes")
    assert planted["auroc"] > 0.95 and planted["warning"]
    assert {t["feature"] for t in planted["top_features"][:2]} & {"width", "aspect"}
    none = audit_records(_generated(tmp_path / "b", False), {"no": 0, "yes": 1}, "yes")
    assert none["auroc"] < 0.7 and not none["warning"]
    assert "predict the label poorly" in none["summary"]


def test_a_link_is_not_followed(tmp_path):
    target = tmp_path / "real.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(target)
    (tmp_path / "link.png").symlink_to(target)
    assert features(tmp_path / "link.png") == {"error": "a link (not followed)"}
    assert features(target)["width"] == 8


@pytest.mark.parametrize("name,limit", [("br35h", 40), ("synth-cxr-drain", 30)])
def test_the_audit_runs_on_shipped_data_and_shows_at_the_gate(tmp_path, name, limit):
    from medbuilder.protocol.datasets import prepare, reference_index

    root = prepare(name, tmp_path / name, limit=limit, echo=lambda *_: None)
    records = [r.model_dump() for r in reference_index(name, root, "diagnosis").train]
    labels = sorted({r["label"] for r in records})
    audit = audit_records(records, {label: i for i, label in enumerate(labels)}, None)
    print(f"\n{name} ({'real' if name == 'br35h' else 'generated'}): {audit['summary']}")
    assert 0 <= audit["auroc"] <= 1 and audit["unreadable"] == 0 and audit["folds"] >= 2
    run = RunFolder.new(tmp_path / "runs")
    run.write(AUDIT_FILE, audit)
    text = "\n".join(audit_lines(run))
    assert "Acquisition shortcut check" in text and f"AUROC {audit['auroc']:.3f}" in text
