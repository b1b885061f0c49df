"""The acquisition-shortcut audit: a metadata-only model, cross-validated by unit, finds a planted size
shortcut, finds none where there is none, and runs on real Br35H and on the generated drain set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.acquisition import BORDER_TOLERANCE, _intensity, border_width, features
from medbuilder.review.metadata_audit import AUDIT_FILE, audit_lines, audit_records


def test_border_width_is_the_uniform_margin():
    image = np.zeros((100, 100), dtype=np.uint8)
    image[10:90, 20:80] = np.random.default_rng(0).integers(50, 255, (80, 60))
    assert border_width(image) == pytest.approx((0.10 + 0.10 + 0.20 + 0.20) / 4, abs=0.02)


def _border_by_definition(gray: np.ndarray) -> float:
    """Each edge's uniform depth, every line compared pixel by pixel with the edge's median."""
    gray = gray.astype(np.float64)
    scale = 255.0 / max(float(gray.max() - gray.min()), 1e-6)
    fractions = []
    for view in (gray, gray[::-1], gray.T, gray.T[::-1]):
        uniform = np.abs(view - np.median(view[0])).max(axis=1) * scale <= BORDER_TOLERANCE
        fractions.append((int(np.argmin(uniform)) if not uniform.all() else len(uniform)) / len(uniform))
    return float(np.mean(fractions))


def test_fast_border_and_intensity_match_their_definitions():
    rng = np.random.default_rng(3)
    for i in range(200):
        gray = rng.integers(0, 256, (int(rng.integers(1, 50)), int(rng.integers(1, 50)))).astype(np.uint8)
        if i % 2:
            gray[: int(rng.integers(0, gray.shape[0] + 1))] = int(rng.integers(0, 256))  # a uniform top band
        assert border_width(gray) == pytest.approx(_border_by_definition(gray), abs=1e-12)
        fast = _intensity(gray)  # uint8: from the histogram
        exact = _intensity(gray.astype(np.int32))  # any other type: from the pixels
        lo, hi = np.percentile(gray.astype(np.float64), [1, 99])
        assert fast == pytest.approx(exact, abs=1e-9) and (fast["p01"], fast["p99"]) == pytest.approx((lo, hi))


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


# ----------------------------------------------------------------------------- the model's own reliance


def _padded_set(folder, n: int, seed: int) -> list[dict]:
    """GENERATED noise slices: 'yes' files are padded with black borders to 4:3, 'no' files are square and
    borderless; nothing else differs, so a model that separates them reads the padding."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        label = "yes" if i % 2 else "no"
        pixels = rng.integers(60, 255, (96, 96), dtype=np.uint8)
        if label == "yes":
            pixels = np.pad(pixels, ((0, 0), (16, 16)))
        path = folder / f"{seed}-{i:03d}.png"
        Image.fromarray(pixels).save(path)
        records.append({"image": str(path), "label": label, "duplicate_group": f"{seed}-{i}"})
    return records


@pytest.fixture(scope="module")
def padded_round(tmp_path_factory):
    """(run, report folder): a template model trained 4 epochs on the padded set (120 train, 40 test)."""
    import json
    import sys
    from pathlib import Path

    from medbuilder.protocol.templates import fill_template, run_training
    from medbuilder.review.verified_metric import fix_test_split

    sys.path.insert(0, str(Path(__file__).parent))
    from test_refine_strategies import FAST, SIBLINGS  # noqa: E402

    tmp_path = tmp_path_factory.mktemp("padded")
    saved = {name: sys.modules.pop(name) for name in SIBLINGS if name in sys.modules}
    run = RunFolder(tmp_path / "run")
    for split, n, seed in (("train", 120, 1), ("test", 40, 2)):
        run.write(f"workspace/index/{split}.json", _padded_set(tmp_path / "images", n, seed))
    run.write("workspace/index/label_dict.json", {"no": 0, "yes": 1})
    fix_test_split(run)
    fill_template("diagnosis", run.workspace, {**FAST, "index_dir": str(run.index_dir), "epochs": 4,
                                                "image_size": [32, 32], "bootstrap": 10})
    run_training(run.workspace, timeout_s=240, echo=False)
    assert json.loads((run.workspace / "metrics.json").read_text())["value"] > 0.95  # it did learn the padding
    (tmp_path / "report").mkdir()
    yield run, tmp_path / "report"
    for name in SIBLINGS:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def test_a_model_that_reads_the_padding_flips_when_re_padded(padded_round):
    from medbuilder.review import metadata_reliance

    run, report = padded_round
    reliance = metadata_reliance.for_round(run, run.workspace, report)
    assert reliance["re-padded"]["n"] == 40 and reliance["re-padded"]["value"] >= 0.4, reliance
    assert reliance["re-padded"]["made_from"] == {"positive": (128, 96), "negative": (96, 96)}
    assert reliance["stratified"]["metadata_auroc_on_test"] == 1.0  # the metadata alone separate the classes
    assert (report / "metadata_reliance.json").is_file()
    assert any((report / "acquisition_counterfactuals" / "re-padded").iterdir())
    assert "change class when re-padded" in metadata_reliance.summary_line(reliance)


def test_temperature_is_fitted_on_the_validation_split_and_keeps_the_calls(padded_round):
    import json

    from medbuilder.review import temperature
    from medbuilder.review.interpret import load_predictor

    run, report = padded_round
    fitted = temperature.for_round(run, run.workspace, report)
    assert fitted["n_validation"] == 12 and temperature.BOUNDS[0] <= fitted["temperature"] <= temperature.BOUNDS[1]
    val = fitted["validation"]
    assert val["after"]["log_loss"] <= val["before"]["log_loss"] + 1e-4  # T minimises it there (T = 1 is allowed)
    assert json.loads((report / "calibration.json").read_text())["temperature"] == fitted["temperature"]
    assert "Temperature T =" in temperature.section(fitted) and "never the test split" in temperature.section(fitted)
    # the template's predictor with the temperature and the carried threshold makes the same calls
    base = load_predictor(run.workspace, run.workspace)
    scaled = type(base)(base.cfg, base.network, {"label_dict": {"no": 0, "yes": 1}}, "cpu",
                        threshold=temperature.carried_threshold(0.3, fitted["temperature"]),
                        temperature=fitted["temperature"])
    base.threshold = 0.3
    files = [r["image"] for r in json.loads((run.index_dir / "test.json").read_text())][:12]
    before, after = base.predict(files), scaled.predict(files)
    assert [p["prediction"] for p in before] == [p["prediction"] for p in after]
    if abs(fitted["temperature"] - 1) > 0.05:
        assert any(abs(a["score"] - b["score"]) > 1e-3 for a, b in zip(before, after))


def test_fitting_recovers_a_known_temperature():
    from medbuilder.review.temperature import fit

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3000, 2))
    shown = np.exp(logits / 2.0)
    labels = (rng.random(3000) < shown[:, 1] / shown.sum(1)).astype(int)  # the labels follow softmax(logits / 2)
    assert fit(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_within_strata_auroc_separates_a_metadata_reader_from_an_anatomy_reader():
    from medbuilder.review.metadata_reliance import stratified_auroc

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.5
    meta = np.where(y, rng.normal(0.7, 0.15, 400), rng.normal(0.3, 0.15, 400))  # metadata carry the label
    reads_metadata = meta + rng.normal(0, 0.02, 400)
    reads_anatomy = y + rng.normal(0, 0.6, 400)
    shortcut, anatomy = stratified_auroc(y, reads_metadata, meta), stratified_auroc(y, reads_anatomy, meta)
    assert shortcut["overall"] > 0.9 and shortcut["value"] < 0.65
    assert anatomy["value"] > 0.75 and abs(anatomy["value"] - anatomy["overall"]) < 0.06
