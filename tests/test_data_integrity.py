"""Raw data is never modified: the dataset manifest, the stage guard, and the index checks that decode files.

Every dataset here is a copy of real files in tmp_path (Br35H JPEGs, the Colin27 NIfTI); the shipped data
is only read.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from flow_helpers import BR35H
from medbuilder.protocol.checks import check_index
from medbuilder.protocol.index import DataIndex, IndexRecord
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.manifest import (MANIFEST_FILE, VIOLATION_FILE, DatasetModified, compare, read_manifest,
                                          take_manifest)
from medbuilder.heap import unfreeze_all
from medbuilder.stages.record import run_stage

COLIN = "/usr/share/mricron/templates/ch2.nii.gz"


def _dataset(root, n: int = 3):
    for status in ("yes", "no"):
        (root / status).mkdir(parents=True)
        for source in sorted((BR35H / status).glob("*.jpg"))[:n]:
            shutil.copyfile(source, root / status / source.name)
    return root


def _run(tmp_path, root) -> RunFolder:
    run = RunFolder.new(tmp_path / "runs")
    run.write("datacard.json", {
        "name": "mri", "title": "Brain MRI copies",
        "description": "Real Br35H brain MRI JPEGs in yes/ and no/ folders.",
        "path": str(root), "tasks": ["diagnosis"], "modality": "MRI", "dimension": "2D", "anatomy": "brain",
        "label_names": ["no", "yes"], "file_formats": ["jpg"], "licence": "as Br35H", "provenance": "real",
        "source": "tests"})
    return run


def test_a_stage_starts_with_what_the_process_kept_out_of_the_collectors_sight(tmp_path):
    run = _run(tmp_path, _dataset(tmp_path / "data", n=1))
    gc.unfreeze()
    seen = []
    run_stage(run, "task_manager", lambda: seen.append(gc.get_freeze_count()) or {})
    assert seen[0] > 1000  # the modules, classes and caches imported so far
    unfreeze_all()
    assert gc.get_freeze_count() == 0


def test_manifest_has_full_sha256_and_sees_modified_deleted_added(tmp_path):
    root = _dataset(tmp_path / "data")
    manifest = take_manifest(root)
    first = sorted((root / "yes").iterdir())[0]
    entry = manifest.files[f"yes/{first.name}"]
    assert entry.sha256 == hashlib.sha256(first.read_bytes()).hexdigest() and entry.size == first.stat().st_size
    assert len(manifest.files) == 6 and compare(manifest)[0].empty
    os.utime(first, ns=(1, 1))  # touched, same bytes: not a change
    assert compare(manifest)[0].empty
    victims = sorted((root / "no").iterdir())
    victims[0].write_bytes(victims[0].read_bytes() + b"\0")
    victims[1].unlink()
    (root / "no" / "extra.jpg").write_bytes(first.read_bytes())
    diff, _ = compare(manifest)
    assert diff.modified == [f"no/{victims[0].name}"] and diff.deleted == [f"no/{victims[1].name}"]
    assert diff.added == ["no/extra.jpg"]


def test_a_stage_that_modifies_the_dataset_fails_until_the_file_is_restored(tmp_path):
    root = _dataset(tmp_path / "data")
    run = _run(tmp_path, root)
    run_stage(run, "task_manager", lambda: {})
    manifest = read_manifest(run)
    assert manifest and len(manifest.files) == 6
    target = sorted((root / "yes").iterdir())[0]
    original = target.read_bytes()

    def vandal() -> dict:
        target.write_bytes(original[:100])
        return {}

    with pytest.raises(DatasetModified, match="Raw data must never be modified"):
        run_stage(run, "data_engineer", vandal)
    record = run.stage("data_engineer")
    assert record.status == "failed" and f"yes/{target.name}" in record.error and "modified 1" in record.error
    assert run.read_json(VIOLATION_FILE)["modified"] == [f"yes/{target.name}"]
    called = []
    with pytest.raises(DatasetModified, match="still differs"):
        run_stage(run, "data_engineer", lambda: called.append(1) or {})
    assert not called  # refused before the stage's work started
    target.write_bytes(original)
    assert run_stage(run, "data_engineer", lambda: {"ok": True})["ok"]
    restored = {rel: e.sha256 for rel, e in read_manifest(run).files.items()}
    assert not run.exists(VIOLATION_FILE) and restored == {rel: e.sha256 for rel, e in manifest.files.items()}


def test_a_failing_stage_that_also_modified_data_says_so(tmp_path):
    root = _dataset(tmp_path / "data")
    run = _run(tmp_path, root)
    run_stage(run, "task_manager", lambda: {})

    def crash() -> dict:
        (root / "no" / "new.png").write_bytes(b"x")
        raise ValueError("the script failed")

    with pytest.raises(DatasetModified) as caught:
        run_stage(run, "module_architect", crash)
    assert isinstance(caught.value.__cause__, ValueError) and "added 1: no/new.png" in str(caught.value)
    assert "no/new.png" in run.stage("module_architect").error


def test_a_persons_fix_between_stages_is_accepted_and_recorded(tmp_path):
    root = _dataset(tmp_path / "data")
    run = _run(tmp_path, root)
    run_stage(run, "task_manager", lambda: {})
    with pytest.raises(RuntimeError):
        run_stage(run, "data_engineer", lambda: (_ for _ in ()).throw(RuntimeError("corrupted file")))
    fixed = sorted((root / "no").iterdir())[0]
    fixed.write_bytes(sorted((BR35H / "no").glob("*.jpg"))[10].read_bytes())
    run_stage(run, "data_engineer", lambda: {})
    manifest = read_manifest(run)
    assert manifest.accepted[-1]["before_stage"] == "data_engineer"
    assert manifest.accepted[-1]["modified"] == [f"no/{fixed.name}"]
    assert manifest.files[f"no/{fixed.name}"].sha256 == hashlib.sha256(fixed.read_bytes()).hexdigest()


def test_a_change_while_a_stage_was_interrupted_is_refused(tmp_path):
    root = _dataset(tmp_path / "data")
    run = _run(tmp_path, root)
    run_stage(run, "task_manager", lambda: {})
    record = run.stage("model_trainer")
    record.status = "running"  # what a killed process leaves
    run.save_stage(record)
    (root / "yes" / "new.jpg").write_bytes(b"x")
    with pytest.raises(DatasetModified, match="while stage model_trainer was running"):
        run_stage(run, "model_trainer", lambda: {})
    record = run.stage("evaluate-0")  # what `medbuilder resume`'s recovery makes of a stage left running
    record.status, record.error = "failed", "interrupted: the flow process stopped while this stage ran"
    run.save_stage(record)
    with pytest.raises(DatasetModified, match="while stage evaluate-0 was running"):
        run_stage(run, "evaluate-0", lambda: {})


def test_prepare_data_may_lay_the_dataset_out(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    run = _run(tmp_path, root)
    run_stage(run, "task_manager", lambda: {})
    assert read_manifest(run).files == {}
    run_stage(run, "prepare_data", lambda: {"root": str(_dataset(root / "copy", 1))})
    manifest = read_manifest(run)
    assert len(manifest.files) == 2 and manifest.accepted[-1]["stage"] == "prepare_data"
    assert run.read_json(MANIFEST_FILE)["root"] == str(root.resolve())


def _index_dir(tmp_path, records: list[dict], task: str = "segmentation"):
    index = DataIndex(task=task, train=[IndexRecord(**r) for r in records[:1]],
                      test=[IndexRecord(**r) for r in records[1:]])
    index.write(tmp_path / "index")
    return tmp_path / "index"


def _png(path, array) -> str:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_empty_constant_and_mismatched_2d_masks(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    scan = Image.open(sorted((BR35H / "yes").glob("*.jpg"))[0]).convert("L")
    image = str(root / "scan.png")
    scan.save(image)
    height, width = scan.size[1], scan.size[0]
    good = np.zeros((height, width)); good[10:20, 10:20] = 1
    records = [{"image": image, "mask": _png(root / "good.png", good)},
               {"image": image, "mask": _png(root / "empty.png", np.zeros((height, width)))},
               {"image": image, "mask": _png(root / "full.png", np.full((height, width), 255))},
               {"image": image, "mask": _png(root / "small.png", good[:-4])}]
    before = take_manifest(root)
    problems = check_index(_index_dir(tmp_path, records), "segmentation", root).problems
    assert any(p.startswith("1 masks are empty (no foreground)") and "empty.png" in p for p in problems)
    assert any("1 masks hold one value everywhere" in p and "full.png (every value 255)" in p for p in problems)
    mismatch = next(p for p in problems if "image/mask pairs do not match" in p)
    assert f"shape {(height, width)} vs mask {(height - 4, width)}" in mismatch and "small.png" in mismatch
    assert not any("good.png" in p for p in problems)
    assert compare(before)[0].empty


def test_nifti_spacing_mismatch_and_a_real_brain_mask_passes(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    image = root / "colin27.nii.gz"
    shutil.copyfile(COLIN, image)
    header = nib.load(image)
    brain = (np.asarray(header.dataobj) > 40).astype(np.uint8)
    nib.save(nib.Nifti1Image(brain, header.affine), root / "mask.nii.gz")
    nib.save(header, root / "colin27_copy.nii")  # the same scan, uncompressed: another file, other bytes
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(brain, coarse), root / "mask_2mm.nii.gz")
    records = [{"image": str(image), "mask": str(root / "mask.nii.gz")},
               {"image": str(root / "colin27_copy.nii"), "mask": str(root / "mask_2mm.nii.gz")}]
    before = take_manifest(root)
    problems = check_index(_index_dir(tmp_path, records), "segmentation", root).problems
    assert len(problems) == 1, problems
    assert "1 image/mask pairs do not match" in problems[0] and "spacing (1.0, 1.0, 1.0) vs mask (2.0, 2.0, 2.0)" \
        in problems[0] and "mask_2mm.nii.gz" in problems[0]
    assert compare(before)[0].empty
