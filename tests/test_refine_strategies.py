"""Refinement strategies of the diagnosis template: roi, mask_confounder, counterfactual_aug, group_balanced.

A tiny generated two-class set stands in for a confounded chest X-ray set: the label
is a faint blob, a bright line (the "drain") agrees with the label in 90% of training
images and 50% of test images, and every record carries the confounder fields of the
index (confounder, confounder_mask, counterfactual: the exact twin with the line
toggled). Each strategy's mechanics are checked on the workspace's own code (imported
from a filled workspace, as the agents run it); roi on real Br35H MRI slices; one
short real training with group_balanced + counterfactual_aug runs end to end.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medbuilder.protocol.index import DataIndex, IndexRecord
from medbuilder.protocol.templates import fill_template, run_training

SIBLINGS = ("common", "engine", "confounders", "dataloader", "model", "predict")
FAST = {"num_threads": 2, "bootstrap": 100, "device": "cpu", "image_size": [48, 48], "channels": [8, 16, 32],
        "batch_size": 16}
LINE, BLOB = 0.95, 0.14


# ----------------------------------------------------------------------------- data


def _png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(np.clip(array * 255, 0, 255).round().astype(np.uint8)).save(path)
    return str(path)


def drain_set(root: Path, n_train: int = 80, n_test: int = 40, size: int = 48, agree_train: float = 0.9,
              agree_test: float = 0.5, seed: int = 0) -> Path:
    """Index of generated images: label 'yes' = faint blob; the line co-occurs with 'yes' in
    `agree_*` of the images. Every 10th record has no twin, every 7th no mask."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    splits = {}
    for split, n, agree in (("train", n_train, agree_train), ("test", n_test, agree_test)):
        records = []
        for i in range(n):
            label = i % 2
            k = i // 2  # index within the class
            line_on = bool(label) if k < round(agree * n / 2) else not label
            base = 0.3 + 0.1 * yy / size + 0.02 * rng.standard_normal((size, size))
            if label:
                cy, cx = rng.integers(16, 32, 2)
                base = base + BLOB * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0 ** 2))
            mask = np.zeros((size, size), bool)
            x0 = int(rng.choice([rng.integers(4, 10), rng.integers(37, 43)]))
            mask[4:size - 4, x0:x0 + 2] = True
            lined = np.where(mask, LINE, base)
            stem = f"{split}_{i:03d}"
            shown, twin = (lined, base) if line_on else (base, lined)
            rec = {"image": _png(images / f"{stem}.png", shown), "label": "yes" if label else "no",
                   "confounder": line_on, "group": "drain" if line_on else "no-drain"}
            if i % 10 != 9:
                rec["counterfactual"] = _png(images / f"{stem}_twin.png", twin)
            if i % 7 != 6:
                rec["confounder_mask"] = _png(images / f"{stem}_mask.png", mask.astype(float))
            records.append(IndexRecord(**rec))
        splits[split] = records
    DataIndex(task="diagnosis", train=splits["train"], test=splits["test"], label_dict={"no": 0, "yes": 1}
              ).write(root / "index")
    return root / "index"


@pytest.fixture(scope="module")
def drain_index(tmp_path_factory) -> Path:
    return drain_set(tmp_path_factory.mktemp("drain"))


@pytest.fixture()
def workspace(tmp_path):
    """fill(values) -> (config, modules): a filled diagnosis workspace and its own code, imported here.
    The template modules are removed from sys.modules afterwards."""
    saved = {name: sys.modules.pop(name) for name in SIBLINGS if name in sys.modules}

    def fill(values: dict, name: str = "ws"):
        ws = tmp_path / name
        fill_template("diagnosis", ws, {**FAST, **values})
        for mod in SIBLINGS:
            sys.modules.pop(mod, None)
        sys.path.insert(0, str(ws))
        try:
            modules = {mod: importlib.import_module(mod) for mod in ("dataloader", "predict", "model")}
        finally:
            sys.path.remove(str(ws))
        # the workspace is the output folder (progress.json goes there), as when its scripts run in it
        return {**json.loads((ws / "config.json").read_text()), "output_dir": str(ws)}, modules

    yield fill
    for name in SIBLINGS:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def _load(path: str) -> torch.Tensor:
    """An image or mask as the template loads it (MONAI's orientation), channel-first."""
    from monai.transforms import LoadImage

    return LoadImage(image_only=True, ensure_channel_first=True)(path)


# ----------------------------------------------------------------------------- mechanics


def test_defaults_leave_every_strategy_off(drain_index, workspace):
    cfg, m = workspace({"index_dir": str(drain_index)})
    assert (cfg["roi"], cfg["roi_crop"], cfg["mask_confounder"], cfg["counterfactual_aug"], cfg["group_balanced"]) \
        == (None, False, False, 0.0, False)
    names = [type(t).__name__ for t in m["dataloader"].deterministic_transforms(cfg, masks=True)]
    assert "KeepRoid" not in names and "InpaintMaskd" not in names
    parts = m["dataloader"].split_records(cfg)
    assert m["dataloader"].sample_weights(cfg, parts["train"], parts["label_dict"]) is None
    used = m["dataloader"].strategies(cfg, parts["train"], parts["label_dict"])
    assert used["active"] == [] and used["train_with_counterfactual"] > 0


def test_group_balanced_gives_every_label_confounder_cell_equal_weight(drain_index, workspace, capsys):
    cfg, m = workspace({"index_dir": str(drain_index), "group_balanced": True, "balanced_sampling": True})
    dl = m["dataloader"]
    parts = dl.split_records(cfg)
    items = parts["train"]
    weights = np.array(dl.sample_weights(cfg, items, parts["label_dict"]))
    cells = [dl.cell(it) for it in items]
    totals = {c: weights[[k for k, x in enumerate(cells) if x == c]].sum() for c in set(cells)}
    counts = {c: cells.count(c) for c in set(cells)}
    assert len(totals) == 4 and max(counts.values()) >= 6 * min(counts.values())  # 90/10 agreement
    assert np.allclose(list(totals.values()), 0.25)
    out = capsys.readouterr().out
    assert "group_balanced: 4 (label, confounder) cells" in out and "yes/confounder" in out and "superseded" in out
    # records without a confounder field: one cell per label (class balance)
    plain = [{k: v for k, v in it.items() if k != "confounder"} for it in items]
    weights = np.array(dl.sample_weights(cfg, plain, parts["label_dict"]))
    labels = np.array([it["label"] for it in plain])
    assert np.allclose([weights[labels == c].sum() for c in (0, 1)], 0.5)
    # the loader draws with these weights: the cells come out about equally often
    torch.manual_seed(0)
    sampler = dl.build_loaders({**cfg, "cache": "none"})["train"].sampler
    drawn = [cells[i] for _ in range(20) for i in sampler]
    shares = np.array([drawn.count(c) / len(drawn) for c in counts])
    assert np.all(np.abs(shares - 0.25) < 0.04), shares


def test_counterfactual_aug_swaps_in_the_twin_at_the_given_rate(drain_index, workspace, capsys):
    cfg, m = workspace({"index_dir": str(drain_index), "counterfactual_aug": 0.3, "val_fraction": 0.0})
    data = m["dataloader"].build_loaders(cfg)
    ds = data["train"].dataset
    assert type(ds).__name__ == "CounterfactualSwap"
    items = data["train_items"]
    with_twin = [i for i, it in enumerate(items) if it.get("counterfactual")]
    assert f"{len(with_twin)} of {len(items)} training items have a counterfactual twin" in capsys.readouterr().out
    assert 0 < len(with_twin) < len(items)
    torch.manual_seed(0)
    swapped, draws = 0, 0
    for _ in range(6):
        for i, it in enumerate(items):
            got = ds[i]
            original = ds.base[i]["image"]
            assert int(got["label"]) == it["label"] and got["id"] == it["id"]
            if i not in ds.twin_of:
                assert torch.equal(got["image"], original)  # no twin: untouched
                continue
            twin = ds.twins[ds.twin_of[i]]["image"]
            assert not torch.allclose(original, twin, atol=0.05)  # the line is toggled
            draws += 1
            swapped += bool(torch.equal(got["image"], twin))
    assert abs(swapped / draws - 0.3) < 0.06, swapped / draws
    # the twin is the same image with the line toggled, through the same chain
    i = with_twin[0]
    twin_path = items[i]["counterfactual"]
    expected = m["dataloader"].deterministic_transforms(cfg)
    from monai.transforms import Compose

    assert torch.allclose(ds.twins[ds.twin_of[i]]["image"], Compose(expected)({"image": twin_path})["image"])


def test_mask_confounder_inpaints_the_line_in_cached_training_images_only(drain_index, workspace, capsys):
    cfg, m = workspace({"index_dir": str(drain_index), "mask_confounder": True, "crop_foreground": False,
                        "val_fraction": 0.0, "max_test_items": 6})
    data = m["dataloader"].build_loaders(cfg)
    assert "mask_confounder: inpainting the confounder in" in capsys.readouterr().out
    from monai.transforms import Compose

    plain = Compose(m["dataloader"].deterministic_transforms(cfg))  # the inference chain
    ds = data["train"].dataset
    checked = 0
    for i, it in enumerate(data["train_items"]):
        cached = ds[i]["image"][0]
        before = plain({"image": it["image"]})["image"][0]
        if not it.get("confounder_mask"):
            assert torch.equal(cached, before)  # no mask: untouched
            continue
        mask = _load(it["confounder_mask"])[0] > 0
        if not it["confounder"]:
            continue
        background = float(torch.quantile(cached[~mask], 0.99))
        assert float(before[mask].max()) > 0.99  # the line was the brightest thing
        assert float(cached[mask].max()) <= background + 0.1, (float(cached[mask].max()), background)
        if it.get("counterfactual"):  # the exact image without the line: the fill is close to it
            clean = plain({"image": it["counterfactual"]})["image"][0]
            assert abs(float(cached[mask].mean()) - float(clean[mask].mean())) < 0.1
        checked += 1
    assert checked >= 20
    test_ds = data["test"].dataset  # test images are never masked
    for i, it in enumerate(data["test_items"]):
        assert torch.equal(test_ds[i]["image"], plain({"image": it["image"]})["image"])


def test_roi_blanks_outside_the_head_on_real_br35h_at_training_and_inference(tmp_path, workspace):
    from medbuilder.protocol.confounders import blank_outside, head_mask
    from medbuilder.protocol.datasets import prepare, reference_index

    root = prepare("br35h", tmp_path / "br35h", limit=2, echo=lambda _: None)
    reference_index("br35h", root, "diagnosis").write(tmp_path / "index")
    cfg, m = workspace({"index_dir": str(tmp_path / "index"), "roi": "head", "image_size": [64, 64],
                        "crop_foreground": False, "keep_aspect": False, "val_fraction": 0.0})
    dl = m["dataloader"]
    chain = dl.deterministic_transforms(cfg)
    names = [type(t).__name__ for t in chain]
    assert names.index("ScaleIntensityd") < names.index("KeepRoid") < names.index("Resized")
    from monai.transforms import Compose

    upto_scale = Compose(chain[:names.index("KeepRoid")])
    roi_step = chain[names.index("KeepRoid")]
    data = dl.build_loaders(cfg)
    predictor = m["predict"].Predictor(cfg, m["model"].build_model(cfg))
    assert "KeepRoid" in [type(t).__name__ for t in predictor.preprocessing.transforms]
    removed = 0.0
    for split in ("train", "test"):
        for i, it in enumerate(data[f"{split}_items"]):
            scaled = upto_scale({"image": it["image"]})["image"]
            grey = scaled[0].numpy()
            reference = head_mask(grey)  # medbuilder's detector, on the image as the template sees it
            blanked = blank_outside(grey, reference)
            expected = (blanked - blanked.min()) / (blanked.max() - blanked.min())
            assert np.allclose(roi_step({"image": scaled})["image"][0].numpy(), expected, atol=1e-5)
            cached = data[split].dataset[i]["image"][0]
            small = torch.nn.functional.interpolate(torch.as_tensor(reference, dtype=torch.float32)[None, None],
                                                    size=(64, 64), mode="area")[0, 0]
            outside = small == 0
            assert outside.any() and float(cached[outside].abs().max()) == 0.0
            without = torch.nn.functional.interpolate(torch.as_tensor(grey)[None, None], size=(64, 64),
                                                      mode="area")[0, 0]
            removed += float(without[outside].clamp(min=0).sum())
            # at inference: the same preprocessing, roi included
            assert torch.allclose(predictor.prepare(it["image"])[0], cached, atol=1e-6)
    assert removed > 1.0  # two of the four slices carry bright marks outside the head


def test_training_with_group_balanced_and_counterfactual_aug_end_to_end(drain_index, tmp_path):
    ws = tmp_path / "ws"
    fill_template("diagnosis", ws, {**FAST, "index_dir": str(drain_index), "epochs": 2, "group_balanced": True,
                                    "counterfactual_aug": 0.5})
    metrics = run_training(ws, timeout_s=240, echo=False)
    assert metrics["epochs"] == 2 and 0.0 <= metrics["value"] <= 1.0
    used = metrics["strategies"]
    assert used["active"] == ["counterfactual_aug", "group_balanced"]
    assert used["counterfactual_aug"] == 0.5 and used["group_balanced"] and not used["mask_confounder"]
    assert used["roi"] is None and used["train_with_counterfactual"] > 0
    assert set(used["train_cells"]) == {"no/confounder", "no/no-confounder", "yes/confounder", "yes/no-confounder"}
    log = (ws / "train_output.log").read_text()
    assert "group_balanced: 4 (label, confounder) cells" in log and "counterfactual twin" in log
    predictions = json.loads((ws / "predictions.json").read_text())
    assert {p["confounder"] for p in predictions} == {True, False}


def _flips(ws: Path, records: list[dict], workspace_modules) -> tuple[float, float]:
    """(share of test images whose predicted class changes with the twin, mean |score change|)."""
    predictor = workspace_modules(ws)["predict"].load(ws)
    pairs = [r for r in records if r.get("counterfactual")]
    a = predictor.predict([r["image"] for r in pairs])
    b = predictor.predict([r["counterfactual"] for r in pairs])
    flips = sum(x["prediction"] != y["prediction"] for x, y in zip(a, b)) / len(pairs)
    return flips, sum(abs(x["score"] - y["score"]) for x, y in zip(a, b)) / len(pairs)


@pytest.mark.slow
def test_counterfactual_aug_lowers_the_counterfactual_flip_rate(tmp_path, workspace):  # workspace: sys.modules restored
    """The shortcut model follows the line (every twin flips it); with counterfactual_aug it learns the blob."""
    index = drain_set(tmp_path / "data", n_train=160, n_test=60, seed=1)
    test = json.loads((index / "test.json").read_text())

    def modules(ws: Path) -> dict:
        for mod in SIBLINGS:
            sys.modules.pop(mod, None)
        sys.path.insert(0, str(ws))
        try:
            return {"predict": importlib.import_module("predict")}
        finally:
            sys.path.remove(str(ws))

    results = {}
    for name, extra in (("shortcut", {}), ("counterfactual_aug", {"counterfactual_aug": 0.5})):
        ws = tmp_path / name
        fill_template("diagnosis", ws, {**FAST, "index_dir": str(index), "epochs": 6, **extra})
        metrics = run_training(ws, timeout_s=240, echo=False)
        results[name] = (metrics["value"], *_flips(ws, test, modules))
    print("AUROC, flip rate, mean |score change| with twins:", results)
    (auc0, flip0, delta0), (auc1, flip1, delta1) = results["shortcut"], results["counterfactual_aug"]
    assert flip0 >= 0.8 and flip1 <= flip0 - 0.2 and delta1 < 0.5 * delta0
    assert auc1 > auc0
