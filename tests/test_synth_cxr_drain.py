"""synth-cxr-drain: a GENERATED set with a planted shortcut (chest drain vs pneumothorax),
its reference split, and the Task Manager and Data Engineer (offline core) honouring it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medbuilder.protocol.datasets import RECIPES, prepare, read_manifest, reference_index
from medbuilder.protocol.datasets import synth_cxr_drain as drain_set

NAME = "synth-cxr-drain"
LIMIT = 10  # per class and split: 20 train, 20 test
PNEUMOTHORAX_REQUEST = "detect pneumothorax; the model must not rely on chest drains"
BRAIN_REQUEST = "Classify brain MRI slices as tumour or no tumour"


def quiet(*_):
    pass


def read_rows(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def agreement(rows: list[dict], split: str) -> float:
    chosen = [r for r in rows if r["split"] == split]
    return sum(int(r["drain"]) == (r["finding"] == "pneumothorax") for r in chosen) / len(chosen)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return prepare(NAME, tmp_path_factory.mktemp("data") / NAME, limit=LIMIT, echo=quiet)


def test_generated_deterministic_and_reads_no_sources(tmp_path):
    recipe = RECIPES[NAME]
    assert recipe.generated and recipe.sources() == []
    a = read_manifest(prepare(NAME, tmp_path / "a", limit=2, echo=quiet))
    drain_set._case.cache_clear()  # draw everything again
    b = read_manifest(prepare(NAME, tmp_path / "b", limit=2, echo=quiet))
    assert a["sha256_of_listing"] == b["sha256_of_listing"] and a["files"] == b["files"] == 1 + 3 * 8


@pytest.mark.parametrize("limit", [None, 10, 30])
def test_agreement_exact_in_train_and_test(limit):
    rows = [{k: str(v) for k, v in r.items()} for r in drain_set.rows(limit)]
    n = {"train": 200, "test": 100} if limit is None else {"train": limit, "test": limit}
    for split in ("train", "test"):
        findings = [r["finding"] for r in rows if r["split"] == split]
        assert findings.count("normal") == findings.count("pneumothorax") == n[split]
    assert agreement(rows, "train") == 0.9 and agreement(rows, "test") == 0.5


def test_prepared_files_and_twins(small):
    rows = read_rows(small)
    assert rows == [{k: str(v) for k, v in r.items()} for r in drain_set.rows(LIMIT)]
    assert list(rows[0]) == list(drain_set.COLUMNS)
    assert agreement(rows, "train") == 0.9 and agreement(rows, "test") == 0.5
    for row in rows:
        image, twin, mask = (grey(small / row[c]) for c in ("image", "counterfactual", "drain_mask"))
        assert image.shape == twin.shape == mask.shape == (128, 128) and image.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        tube = mask > 0
        changed = image != twin
        assert changed.any() and not (changed & ~ndimage.binary_dilation(tube)).any(), row["image"]
        with_drain, without = (image, twin) if row["drain"] == "1" else (twin, image)
        assert with_drain[tube].mean() > without[tube].mean() + 40


def test_reference_index_keeps_split_and_confounder(small):
    rows = {str(small.resolve() / r["image"]): r for r in read_rows(small)}
    index = reference_index(NAME, small, "diagnosis")
    assert index.label_dict == {"normal": 0, "pneumothorax": 1}
    assert (len(index.train), len(index.test)) == (2 * LIMIT, 2 * LIMIT)
    for split in ("train", "test"):
        for rec in getattr(index, split):
            row = rows[rec.image]
            assert row["split"] == split and rec.label == row["finding"]
            assert rec.confounder == (row["drain"] == "1")
            assert rec.group == ("drain" if rec.confounder else "no-drain")
            for path in (rec.confounder_mask, rec.counterfactual):
                assert Path(path).is_absolute() and Path(path).is_file()


def _run(request: str, dataset: str | None = None):
    from medbuilder.agents.runner import run_role
    from medbuilder.protocol.run_folder import RunFolder
    from medbuilder.settings import get_settings

    settings = get_settings()
    run = RunFolder.new(settings.runs_dir)
    run.write("request.json", {"text": request, **({"dataset": dataset} if dataset else {})})
    run_role("task_manager", run, settings, "offline")
    return run, settings


def test_task_manager_picks_the_drain_set_only_for_pneumothorax(data_env):
    run, _ = _run(PNEUMOTHORAX_REQUEST)
    plan = run.read_json("plan.json")
    assert (plan["status"], plan["dataset"], plan["task"]) == ("ok", NAME, "diagnosis")
    assert plan["objective"]["confounder"] == "chest drain"
    run, _ = _run(BRAIN_REQUEST)
    assert run.read_json("plan.json")["dataset"] == "br35h"


def test_data_engineer_keeps_split_and_carries_confounder(data_env, monkeypatch):
    from medbuilder.agents.runner import run_role
    from medbuilder.settings import get_settings

    monkeypatch.setenv("MEDBUILDER_ECHO_SCRIPTS", "false")
    get_settings.cache_clear()
    root = prepare(NAME, data_env / "data" / NAME, limit=LIMIT, echo=quiet).resolve()
    run, settings = _run(PNEUMOTHORAX_REQUEST)
    assert run.read_json("plan.json")["dataset"] == NAME
    run_role("data_engineer", run, settings, "offline")

    assert json.loads(run.path("index_report.json").read_text())["problems"] == []
    rows = {str(root / r["image"]): r for r in read_rows(root)}
    for split in ("train", "test"):
        records = json.loads((run.index_dir / f"{split}.json").read_text())
        assert len(records) == 2 * LIMIT
        for rec in records:
            row = rows[rec["image"]]
            assert row["split"] == split and rec["label"] == row["finding"] and "split" not in rec
            assert rec["confounder"] is (row["drain"] == "1")
            assert rec["group"] == ("chest drain" if rec["confounder"] else "no chest drain")
            assert rec["confounder_mask"] == str(root / row["drain_mask"])
            assert rec["counterfactual"] == str(root / row["counterfactual"])
    layout = json.loads(run.path("layout.json").read_text())
    assert layout["split"]["column"] == "split" and layout["confounder"]["presence"]["column"] == "drain"
    assert not (run.workspace / "make_index.py").exists()  # the layout expressed it: no script of its own
