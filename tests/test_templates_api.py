"""Template specs, filling, suggestions, the runner's errors, and the metric helpers (no training)."""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.templates import (FillRecord, TemplateError, TemplateSpec, TrainingError, fill_template,
                                           get_template, list_templates, run_training, suggest_values)
from medbuilder.protocol.templates.spec import COMMON_DIR, TEMPLATES_DIR

sys.path.insert(0, str(Path(__file__).parent))
import template_data  # noqa: E402

TASKS = ["diagnosis", "segmentation", "anomaly_detection", "report_generation"]
COMMON_KEYS = {"index_dir", "output_dir", "spatial_dims", "in_channels", "epochs", "batch_size", "lr", "seed",
               "max_train_items", "device", "num_workers", "cache", "time_limit_s", "val_fraction"}


@pytest.fixture(scope="module")
def br35h_dir(tmp_path_factory) -> Path:
    return template_data.br35h_index(tmp_path_factory.mktemp("br35h"), per_class=10)


def test_every_task_has_a_template_with_its_metric_and_dims():
    specs = {s.name: s for s in list_templates()}
    assert sorted(specs) == sorted(TASKS)
    expected = {"diagnosis": ("auroc", {2, 3}), "segmentation": ("dice", {2, 3}),
                "anomaly_detection": ("auroc", {2}), "report_generation": ("bleu4", {2})}
    for name, (metric, dims) in expected.items():
        spec = specs[name]
        assert isinstance(spec, TemplateSpec) and spec.task == Task(name)
        assert spec.metric == metric and dims <= set(spec.dims)
        assert COMMON_KEYS <= set(spec.keys), COMMON_KEYS - set(spec.keys)
        assert all(k.doc for k in spec.keys.values())
        assert spec.keys["index_dir"].required
        for f in spec.files:
            assert (spec.folder / f).exists() or (COMMON_DIR / f).is_file(), f"{name}: {f} missing"
        assert {"dataloader.py", "model.py", "train.py", "common.py", "engine.py", "README.md"} <= set(spec.files)
    assert "class_weights" in specs["diagnosis"].keys and "balanced_sampling" in specs["diagnosis"].keys
    assert "patch_size" in specs["segmentation"].keys and "image_size" in specs["diagnosis"].keys


def test_defaults_pass_their_own_checks():
    for spec in list_templates():
        for key in spec.keys.values():
            if not key.required:
                assert key.check(key.default) == key.default, (spec.name, key.name)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(TemplateError, match="valid tasks: anomaly_detection, diagnosis, report_generation"):
        get_template("detection")
    assert get_template(Task.segmentation).name == "segmentation"


@pytest.mark.parametrize("task", TASKS)
def test_fill_rejects_unknown_key_listing_valid_keys(task, tmp_path, br35h_dir):
    with pytest.raises(TemplateError) as err:
        fill_template(task, tmp_path / "ws", {"index_dir": str(br35h_dir), "learning_rate": 0.1})
    message = str(err.value)
    assert "learning_rate" in message and "valid keys" in message
    assert "epochs" in message and "batch_size" in message and "index_dir" in message
    assert not (tmp_path / "ws" / "config.json").exists()


def test_fill_rejects_wrong_types_and_ranges(tmp_path, br35h_dir):
    base = {"index_dir": str(br35h_dir)}
    for bad, match in [({"epochs": "3"}, "wrong type"), ({"epochs": 2.5}, "wrong type"),
                       ({"epochs": True}, "wrong type"),
                       ({"image_size": [64, "a"]}, "wrong type"), ({"epochs": 0}, ">= 1"),
                       ({"model": "vit"}, "valid values"), ({"image_size": [64, 64, 64]}, "needs 2 numbers"),
                       ({"spatial_dims": 4}, "valid values"), ({"class_weights": "inverse"}, "wrong type|valid")]:
        with pytest.raises(TemplateError, match=match):
            fill_template("diagnosis", tmp_path / "ws", {**base, **bad})
    with pytest.raises(TemplateError, match="required"):
        fill_template("diagnosis", tmp_path / "ws", {"epochs": 2})
    with pytest.raises(TemplateError, match="no train.json"):
        fill_template("diagnosis", tmp_path / "ws", {"index_dir": str(tmp_path)})


def test_fill_writes_config_and_record(tmp_path, br35h_dir, monkeypatch):
    monkeypatch.chdir(br35h_dir.parent)
    ws = tmp_path / "ws"
    record = fill_template("diagnosis", ws, {"index_dir": br35h_dir.name, "epochs": 3, "lr": 1,
                                             "class_weights": [1, 2]})
    assert isinstance(record, FillRecord)
    config = json.loads((ws / "config.json").read_text())
    assert config["index_dir"] == str(br35h_dir.resolve())  # made absolute: train.py runs with cwd=workspace
    assert config["epochs"] == 3 and config["lr"] == 1.0 and isinstance(config["lr"], float)
    assert config["class_weights"] == [1.0, 2.0]
    spec = get_template("diagnosis")
    assert config["batch_size"] == spec.keys["batch_size"].default and set(config) == set(spec.keys)
    saved = FillRecord.read(ws)
    assert saved.template == "diagnosis" and saved.version == spec.version
    assert saved.from_values == ["index_dir", "epochs", "lr", "class_weights"]
    assert "batch_size" in saved.from_defaults and "epochs" not in saved.from_defaults
    for f in ("train.py", "dataloader.py", "model.py", "common.py", "engine.py", "template.yaml", "README.md",
              "examples/train.json", "config.json"):
        assert (ws / f).is_file() and f in saved.files
    assert (ws / "engine.py").read_bytes() == (COMMON_DIR / "engine.py").read_bytes()
    # the workspace runs standalone: nothing in it imports medbuilder
    imports = re.compile(r"^\s*(from|import)\s+medbuilder", re.M)
    assert not any(imports.search(p.read_text()) for p in ws.glob("*.py"))


def test_fill_never_overwrites_edited_files_silently(tmp_path, br35h_dir):
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {"index_dir": str(br35h_dir), "epochs": 3})
    fill_template("diagnosis", ws, {"index_dir": str(br35h_dir), "epochs": 4})  # untouched files: refill is fine
    assert json.loads((ws / "config.json").read_text())["epochs"] == 4
    with (ws / "model.py").open("a") as f:
        f.write("# tuned by the Model Trainer\n")
    with pytest.raises(TemplateError, match=r"edited files .*model\.py.*overwrite=True"):
        fill_template("diagnosis", ws, {"index_dir": str(br35h_dir), "epochs": 5})
    assert json.loads((ws / "config.json").read_text())["epochs"] == 4
    fill_template("diagnosis", ws, {"index_dir": str(br35h_dir), "epochs": 5}, overwrite=True)
    assert "tuned" not in (ws / "model.py").read_text()
    other = tmp_path / "foreign"
    other.mkdir()
    (other / "train.py").write_text("print('mine')\n")
    with pytest.raises(TemplateError, match="train.py"):
        fill_template("diagnosis", other, {"index_dir": str(br35h_dir)})


@pytest.mark.parametrize("task", TASKS)
def test_examples_are_valid_index_files(task):
    folder = TEMPLATES_DIR / task / "examples"
    index = DataIndex.read(folder, task)
    assert len(index.train) >= 3 and index.test
    assert all(Path(r.image).is_absolute() for r in index.train + index.test)
    if task in ("diagnosis", "anomaly_detection"):
        assert {r.label for r in index.train} <= set(index.label_dict)


@pytest.mark.parametrize("task", TASKS)
def test_readme_documents_every_key(task):
    readme = (TEMPLATES_DIR / task / "README.md").read_text()
    spec = get_template(task)
    missing = [k for k in spec.keys if f"`{k}`" not in readme]
    assert not missing, f"{task}/README.md does not mention {missing}"
    assert spec.metric in readme


def test_suggest_values_from_real_and_generated_data(tmp_path, br35h_dir):
    diag = suggest_values("diagnosis", DataIndex.read(br35h_dir, "diagnosis"), "2D")
    assert diag["num_classes"] == 2 and diag["spatial_dims"] == 2 and diag["in_channels"] == 1  # RGB-stored greys
    assert diag["image_size"] in ([64, 64], [96, 96]) and "class_weights" not in diag
    imbalanced = DataIndex.read(br35h_dir, "diagnosis")
    imbalanced.train = ([r for r in imbalanced.train if r.label == "no"]
                        + [r for r in imbalanced.train if r.label == "yes"][:2])
    assert suggest_values("diagnosis", imbalanced, 2)["class_weights"] == "balanced"
    anomaly = suggest_values("anomaly_detection", DataIndex.read(br35h_dir, "anomaly_detection"), None)
    assert anomaly["normal_label"] == "no"
    spheres = template_data.spheres_index(tmp_path / "s", 4, 2, 32)
    seg = suggest_values("segmentation", DataIndex.read(spheres, "segmentation"), "3D")
    assert seg["spatial_dims"] == 3 and seg["num_classes"] == 2 and len(seg["patch_size"]) == 3
    shapes = template_data.shapes_2d_index(tmp_path / "p", 4, 2)
    seg2 = suggest_values("segmentation", DataIndex.read(shapes, "segmentation"), None)
    assert seg2["spatial_dims"] == 2 and seg2["image_size"] == [64, 64] and seg2["num_classes"] == 2
    reports = template_data.quadrant_report_index(tmp_path / "r", 20, 4)
    rep = suggest_values("report_generation", DataIndex.read(reports, "report_generation"), 2)
    assert 8 <= rep["max_report_tokens"] <= 20
    for task, values in [("diagnosis", diag), ("anomaly_detection", anomaly), ("segmentation", seg),
                         ("segmentation", seg2), ("report_generation", rep)]:
        fill_template(task, tmp_path / f"ws_{task}_{len(values)}", {"index_dir": str(br35h_dir), **values})
    with pytest.raises(TemplateError, match="dims"):
        suggest_values("diagnosis", DataIndex.read(br35h_dir, "diagnosis"), "4D")


def _fake_workspace(tmp_path: Path, body: str) -> Path:
    ws = tmp_path / "fake"
    ws.mkdir()
    (ws / "config.json").write_text("{}")
    (ws / "train.py").write_text(textwrap.dedent(body))
    return ws


def test_run_training_failure_raises_with_output_tail(tmp_path):
    ws = _fake_workspace(tmp_path, """
        for i in range(100):
            print("epoch", i)
        raise SystemExit("CUDA out of memory (pretend)")
    """)
    with pytest.raises(TrainingError) as err:
        run_training(ws, echo=False)
    assert err.value.returncode == 1 and "epoch 99" in str(err.value) and "out of memory" in str(err.value)
    assert "epoch 0\n" not in err.value.tail  # a tail, not everything
    assert "epoch 0" in (ws / "train_output.log").read_text()


def test_run_training_timeout_kills_and_missing_metrics_is_an_error(tmp_path):
    ws = _fake_workspace(tmp_path, "import time\nprint('starting', flush=True)\ntime.sleep(60)\n")
    with pytest.raises(TrainingError, match="timeout_s=1"):
        run_training(ws, timeout_s=1, echo=False)
    (ws / "train.py").write_text("print('no metrics written')\n")
    with pytest.raises(TrainingError, match="wrote no metrics.json"):
        run_training(ws, echo=False)
    (ws / "train.py").write_text("import json\n"
                                 "json.dump({'metric': 'auroc', 'value': 0.5}, open('metrics.json', 'w'))\n")
    assert run_training(ws, echo=False)["value"] == 0.5
    with pytest.raises(FileNotFoundError, match="fill_template"):
        run_training(tmp_path / "nowhere")


def _common_module(name: str = "common"):
    sys.path.insert(0, str(COMMON_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(COMMON_DIR))


def test_auroc_and_bootstrap_match_reference_values():
    from sklearn.metrics import roc_auc_score

    engine = _common_module("engine")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y * 0.7 + rng.normal(0, 0.5, 200)
    s[:20] = 0.5  # ties
    assert engine.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(engine.auroc([1, 1], [0.2, 0.3]))
    lo, hi = engine.bootstrap_ci(lambda idx: engine.auroc(y[idx], s[idx]), len(y), 300, 0)
    assert lo < engine.auroc(y, s) < hi and hi - lo < 0.3


def test_split_validation_keeps_patients_whole_and_classes():
    common = _common_module()
    records = [{"image": f"/x/{i}.png", "label": "ab"[i % 2], "patient_id": f"p{i // 2}"}
               for i in range(40)]
    train, val = common.split_validation(records, 0.2, seed=1, key="label")
    assert train and val and len(train) + len(val) == 40
    assert not {r["patient_id"] for r in train} & {r["patient_id"] for r in val}
    sub = common.subsample(records, 10, seed=0)
    assert len(sub) == 10 and {r["label"] for r in sub} == {"a", "b"}


def test_bleu4_matches_hand_computed_values():
    sys.path.insert(0, str(TEMPLATES_DIR / "report_generation"))
    try:
        import text
    finally:
        sys.path.pop(0)
    ref = "the cat sat on the mat ."
    assert text.corpus_bleu([ref], [ref]) == pytest.approx(1.0)
    assert text.corpus_bleu(["a dog ran ."], [ref]) == 0.0
    # 'the cat sat on the mat' vs ref: 6/6, 5/5, 4/4, 3/3 precisions, brevity exp(1 - 7/6)
    assert text.corpus_bleu(["the cat sat on the mat"], [ref]) == pytest.approx(math.exp(1 - 7 / 6))
    vocab = text.Vocab.build(["Mild cardiomegaly.", "No effusion."])
    ids = vocab.encode("Mild effusion, unseen.", 10)
    assert ids[0] == 1 and ids[-1] == 2 and vocab.stoi["<unk>"] in ids
    assert vocab.decode(ids) == "mild effusion <unk> <unk> ."


def _template_model(template: str):
    """The template's model.py as its own module (common.py importable beside it, as in a workspace)."""
    import importlib.util

    sys.path.insert(0, str(COMMON_DIR))
    try:
        spec = importlib.util.spec_from_file_location(f"model_{template}", TEMPLATES_DIR / template / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(COMMON_DIR))


@pytest.mark.parametrize("template, dims, channels_last", [
    ("diagnosis", 2, True), ("anomaly_detection", 2, True), ("report_generation", 2, True),
    ("diagnosis", 3, False), ("segmentation", 2, False), ("segmentation", 3, False)])
def test_2d_networks_are_built_channels_last_and_compute_the_same(template, dims, channels_last):
    import torch

    module = _template_model(template)
    cfg = {"spatial_dims": dims, "in_channels": 1, "num_classes": 2, "image_size": [32] * dims,
           "channels": [8, 16, 32, 64]}
    net = module.build_model(cfg, 20) if template == "report_generation" else module.build_model(cfg)
    # convolution kernels whose two layouts differ in memory (more than one input channel and pixel)
    kernels = [p for p in net.parameters() if p.ndim >= 4 and p.shape[1] > 1 and p[0, 0].numel() > 1]
    assert kernels
    if channels_last:
        assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in kernels)
    else:
        assert all(w.is_contiguous() for w in kernels)
    if template == "diagnosis" and dims == 2:
        plain = module.build_model(cfg).to(memory_format=torch.contiguous_format)
        plain.load_state_dict(net.state_dict())
        x = torch.rand(4, 1, 32, 32)
        assert torch.allclose(net.eval()(x), plain.eval()(x), atol=1e-5)
