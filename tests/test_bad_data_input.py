"""Bad data input: each case gets a clear error naming the file or field and the fix, and the dataset manifest
is unchanged. Corrupted files are made from real ones (Br35H JPEGs, Colin27 NIfTI) in tmp_path.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from flow_helpers import BR35H, kill_tree, only_run, start, wait_for, write_card
from medbuilder.protocol.checks import check_index
from medbuilder.protocol.index import DataIndex, IndexRecord
from medbuilder.protocol.manifest import compare, read_manifest, take_manifest
from medbuilder.protocol.registry import DatacardError, load_card
from medbuilder.protocol.run_folder import RunFolder

REQUEST = "Classify brain MRI slices as tumour or no tumour"
COLIN = "/usr/share/mricron/templates/ch2.nii.gz"


def _scan(i: int = 0, status: str = "yes"):
    return sorted((BR35H / status).glob("*.jpg"))[i]


def _truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _jpeg(folder):
    return _truncate(shutil.copyfile(_scan(), folder / "scan.jpg"))


def _png(folder):
    Image.open(_scan()).save(folder / "scan.png")
    return _truncate(folder / "scan.png")


def _nifti(folder):
    return _truncate(shutil.copyfile(COLIN, folder / "scan.nii.gz"))


def _dicom(folder):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(Image.open(_scan()).convert("L"))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "MR", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / "scan.dcm", enforce_file_format=True)
    return _truncate(folder / "scan.dcm", 0.8)


@pytest.mark.parametrize("make, why", [(_jpeg, "image file is truncated"), (_png, "image file is truncated"),
                                       (_nifti, "compressed stream ends early"),
                                       (_dicom, "pixel data could not be decoded")])
def test_a_corrupted_file_in_the_index_is_named_with_the_fix(tmp_path, make, why):
    root = tmp_path / "data"
    root.mkdir()
    good = [shutil.copyfile(_scan(i, s), root / f"{s}{i}.jpg") for s in ("yes", "no") for i in (1, 2)]
    broken = make(root)
    records = [{"image": str(p), "label": p.name[:-5]} for p in good]
    index = DataIndex(task="diagnosis", train=[IndexRecord(**r) for r in records[::2]],
                      test=[IndexRecord(**r) for r in records[1::2]] + [IndexRecord(image=str(broken), label="yes")],
                      label_dict={"no": 0, "yes": 1})
    index.write(tmp_path / "index")
    before = take_manifest(root)
    problems = check_index(tmp_path / "index", "diagnosis", root, ["no", "yes"], run_id="run-7").problems
    assert len(problems) == 1, problems
    assert problems[0].startswith("1 indexed files cannot be read: the file is truncated or corrupted: ")
    assert f"{broken}: " in problems[0] and why in problems[0]
    assert "replace the file or remove it from the dataset folder, then `medbuilder resume run-7`" in problems[0]
    assert compare(before)[0].empty


def _card(settings_env, path, **extra) -> dict:
    card = {"name": "scans", "title": "Brain MRI scans", "path": str(path), "tasks": ["diagnosis"],
            "description": "Brain MRI JPEG slices, one folder per class (yes, no).", "modality": "MRI",
            "dimension": "2D", "anatomy": "brain", "label_names": ["no", "yes"], "file_formats": ["jpg"],
            "licence": "as Br35H", "provenance": "real", "source": "tests", **extra}
    write_card(settings_env / "datacards", card)
    return card


def _run_with(settings_env, card) -> RunFolder:
    run = RunFolder.new(settings_env / "runs")
    run.write("datacard.json", card)
    return run


@pytest.mark.parametrize("state, problem", [("missing", "does not exist"), ("empty", "is empty (no files)")])
def test_a_dataset_folder_missing_or_empty_stops_the_run_at_prepare_data(settings_env, state, problem):
    from medbuilder.stages.prepare import prepare_stage

    root = settings_env / "data" / "scans"
    if state == "empty":
        root.mkdir()
    run = _run_with(settings_env, _card(settings_env, root))
    with pytest.raises(DatacardError) as caught:
        prepare_stage(str(run.root))
    message = str(caught.value)
    assert message.startswith(f"{settings_env / 'datacards' / 'scans.yaml'}: field 'path': ")
    assert problem in message and str(root) in message and f"then `medbuilder resume {run.run_id}`" in message
    assert run.stage("prepare_data").status == "failed" and problem in run.stage("prepare_data").error
    manifest = read_manifest(run)
    assert (manifest is None) == (state == "missing") and (manifest is None or compare(manifest)[0].empty)


def test_a_missing_folder_with_a_recipe_says_how_to_prepare_it(settings_env):
    from medbuilder.protocol.registry import check_dataset_folder

    card = load_card(write_card(settings_env / "datacards", {**_card(settings_env, "nowhere"), "prepare": "br35h"}))
    with pytest.raises(DatacardError, match=r"field 'path': folder .*nowhere does not exist. "
                                            r"Fix: run `medbuilder data prepare br35h`"):
        check_dataset_folder(card, "datacards/scans.yaml", settings_env / "data" / "nowhere")


def test_a_datacard_not_in_utf8_names_the_file_and_the_fix(settings_env):
    file = settings_env / "datacards" / "latin.yaml"
    file.write_bytes("name: scans\ntitle: Scanner de l'hôpital\n".encode("latin-1"))
    with pytest.raises(DatacardError, match=r"latin.yaml: field '\(file\)': not UTF-8 text \(byte 0xf4 at position "
                                            r"\d+\). Fix: save the file as UTF-8"):
        load_card(file)


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig"])
def test_a_labels_csv_in_another_encoding_is_read_with_accented_names(tmp_path, encoding):
    """The shared indexer (run in-process here) and preview_files read the table; the report names its encoding."""
    from medbuilder.protocol.indexing import IndexJob, apply_layout, write_index
    from medbuilder.protocol.layout import Images, Layout, TableSource
    from medbuilder.protocol.tools.context import Workspace
    from medbuilder.protocol.tools.preview_files import preview_files

    root = tmp_path / "données"
    (root / "scans").mkdir(parents=True)
    lines = ["fichier,état"]
    for status in ("yes", "no"):
        for i in range(5):
            name = f"scans/irm_{status}_é{i}.jpg"
            shutil.copyfile(_scan(i, status), root / name)
            lines.append(f"{name},{status}")
    (root / "labels.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    before = take_manifest(root)

    shown = preview_files(Workspace(tmp_path / "ws", read_roots=(root,)), str(root / "labels.csv"))
    assert shown.summary["columns"] == ["fichier", "état"] and shown.summary["rows"] == 10
    layout = Layout(task="diagnosis", images=Images(roots=["scans"]),
                    label=TableSource(table="labels.csv", column="état", key_column="fichier"))
    records, report = apply_layout(IndexJob(root=str(root), task="diagnosis", dimension="2D",
                                            label_names=["no", "yes"], normal_class="no", layout=layout))
    assert report.records == 10 and report.questions == []
    if encoding == "utf-8-sig":
        assert report.notes == []
    else:
        assert report.notes[0].startswith(f"{root / 'labels.csv'} is not UTF-8; read it as {encoding}")
    write_index(records, report, tmp_path / "index", "diagnosis", "2D", ["no", "yes"], "no")
    train = json.loads((tmp_path / "index" / "train.json").read_text())
    assert any("irm_yes_é" in r["image"] for r in train)
    assert check_index(tmp_path / "index", "diagnosis", root, ["no", "yes"]).problems == []
    assert compare(before)[0].empty


def _stage_status(run_dir, stage: str) -> str | None:
    try:
        return json.loads((run_dir / "stages" / f"{stage}.json").read_text())["status"]
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_a_run_stopped_by_a_corrupted_file_resumes_once_it_is_replaced(prefect_api, br35h_small):
    """`medbuilder build` stops at the Data Engineer naming the file; the clinician replaces it;
    `medbuilder resume RUN` skips the finished stages and gets past the Data Engineer (stopped there
    to keep the test short: tests/test_flow.py covers the rest of a resumed run)."""
    env = {"PREFECT_API_URL": prefect_api, "MEDBUILDER_MAX_DEBUG_LOOPS": "0"}
    broken = sorted((br35h_small / "data" / "br35h" / "yes").iterdir())[0]
    original = broken.read_bytes()
    _truncate(broken)
    log = br35h_small / "build.log"
    build = start(["build", REQUEST, "--approve", "auto"], env, log)
    try:
        assert build.wait(timeout=300) != 0, log.read_text()[-3000:]
    finally:
        if build.poll() is None:
            kill_tree(build)
    run = RunFolder(only_run(br35h_small / "runs"))
    stage = run.stage("data_engineer")
    assert stage.status == "failed" and f"{broken}: cannot decode it as an image" in stage.error
    assert "the file is truncated or corrupted" in stage.error and f"`medbuilder resume {run.run_id}`" in stage.error
    assert str(broken) in log.read_text()
    assert compare(read_manifest(run))[0].empty  # the run changed nothing in the dataset

    broken.write_bytes(original)  # the clinician replaces the file
    resume = start(["resume", run.run_id], env, br35h_small / "resume.log")
    try:
        wait_for(lambda: _stage_status(run.root, "module_architect") is not None, 300, "the Module Architect",
                 br35h_small / "resume.log")
    finally:
        kill_tree(resume)
    assert run.stage("task_manager").attempts == 1 and run.stage("prepare_data").attempts == 1
    assert run.stage("data_engineer").attempts == 2 and run.stage("data_engineer").status == "completed"
    assert run.read_json("index_report.json")["problems"] == []
    accepted = read_manifest(run).accepted
    assert accepted[-1]["before_stage"] == "data_engineer" and accepted[-1]["modified"] == [f"yes/{broken.name}"]
    assert compare(read_manifest(run))[0].empty
