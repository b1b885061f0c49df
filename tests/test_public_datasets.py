"""Public datasets: each template's card, installed from a GENERATED replica of its published layout, indexes
what the replica holds (per class, records, patients, split, image-mask pairs) and leaves the folder as it was."""

from __future__ import annotations

import csv
import hashlib
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medbuilder.protocol.indexing import DatasetFacts, IndexJob, apply_layout
from medbuilder.protocol.indexing.apply import label_key
from medbuilder.protocol.public import PublicDatasetError, install, templates
from medbuilder.protocol.public.replicas import BUILDERS, make_replica
from medbuilder.protocol.registry import Registry


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def records_of(card) -> list[dict]:
    facts = DatasetFacts(root=str(card.path), task=card.tasks[0].value, dimension=card.dimension,
                         label_names=card.label_names, min_class_images=1)
    return apply_layout(IndexJob.of(facts, card.layout))[0]


def test_every_public_dataset_has_a_replica():
    assert set(BUILDERS) == set(templates()) and len(templates()) >= 19


@pytest.mark.parametrize("name", sorted(templates()))
def test_card_installed_from_its_replica_indexes_what_the_replica_holds(name, tmp_path):
    replica = make_replica(name, tmp_path / "download")
    before = tree_digest(tmp_path / "download")
    installed = install(name, replica.root, tmp_path / "datacards", converted_to=tmp_path / "converted")
    report = installed.report

    card = Registry(tmp_path / "datacards").get(installed.card.name)
    assert card.provenance == "generated" and card.title.startswith("Generated replica of ")
    assert "<<" not in installed.file.read_text(encoding="utf-8")
    assert report.records == replica.records
    if replica.per_class:
        assert report.per_class == replica.per_class
    if replica.patients is not None:
        assert report.patients == replica.patients
    if replica.split is not None:
        assert report.predefined_split == replica.split
    if replica.pairs:
        pairs = {(Path(r["image"]).relative_to(replica.root).as_posix(), Path(r["mask"]).relative_to(replica.root)
                  .as_posix()) for r in records_of(card)}
        assert pairs == set(replica.pairs)
    assert tree_digest(tmp_path / "download") == before


def test_multi_label_sets_take_the_finding_asked_for(tmp_path):
    replica = make_replica("nih-chestxray14", tmp_path / "nih", finding="Cardiomegaly")
    installed = install("nih-chestxray14", replica.root, tmp_path / "cards", finding="cardiomegaly")
    assert installed.card.name == "nih-chestxray14-cardiomegaly"
    assert installed.report.per_class == replica.per_class == {"cardiomegaly": 3, "no cardiomegaly": 3}
    with pytest.raises(PublicDatasetError, match="no finding 'Hair'.*Cardiomegaly"):
        install("nih-chestxray14", replica.root, tmp_path / "cards", finding="Hair")
    with pytest.raises(PublicDatasetError, match="leave out --finding"):
        install("btcv", replica.root, tmp_path / "cards", finding="Cardiomegaly")
    with pytest.raises(PublicDatasetError, match="installed already"):
        install("nih-chestxray14", replica.root, tmp_path / "cards", finding="Cardiomegaly")


def test_replica_labels_agree_with_torchxrayvision_dataset_classes(tmp_path):
    import torchxrayvision as xrv

    nih = make_replica("nih-chestxray14", tmp_path / "nih", finding="Pneumothorax")
    theirs = xrv.datasets.NIH_Dataset(imgpath=str(nih.root), csvpath=str(nih.root / "Data_Entry_2017_v2020.csv"),
                                      views=["*"], unique_patients=False)
    column = theirs.pathologies.index("Pneumothorax")
    ours = install("nih-chestxray14", nih.root, tmp_path / "cards", finding="Pneumothorax").report
    assert int(theirs.labels[:, column].sum()) == ours.per_class["pneumothorax"] == 3

    chex = make_replica("chexpert", tmp_path / "chexpert")
    theirs = xrv.datasets.CheX_Dataset(imgpath=str(chex.root), csvpath=str(chex.root / "train.csv"), views=["*"],
                                       unique_patients=False)
    column = theirs.pathologies.index("Effusion")  # torchxrayvision's name for CheXpert's Pleural Effusion
    ours = install("chexpert", chex.root, tmp_path / "cards").report
    assert int((theirs.labels[:, column] == 1).sum()) == ours.per_class["pleural effusion"] == 2


def test_a_folder_that_is_not_the_dataset_gets_what_is_missing_and_the_published_layout(tmp_path):
    replica = make_replica("mimic-cxr-jpg", tmp_path / "mimic")
    (replica.root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(PublicDatasetError) as err:
        install("mimic-cxr-jpg", replica.root, tmp_path / "cards")
    assert "mimic-cxr-2.0.0-split.csv" in str(err.value) and "published layout" in str(err.value)
    with pytest.raises(PublicDatasetError, match="is not a folder"):
        install("mimic-cxr-jpg", tmp_path / "nowhere", tmp_path / "cards")
    assert not (tmp_path / "cards").exists()


def test_a_label_table_from_another_release_is_refused(tmp_path):
    replica = make_replica("rsna-pneumonia", tmp_path / "rsna")
    table = replica.root / "stage_2_train_labels.csv"
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    with table.open("w", encoding="utf-8", newline="") as handle:  # every Target 0: not the images' table
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "Target": "0"} for row in rows)
    with pytest.raises(PublicDatasetError, match="no image is labelled \\['pneumonia'\\]"):
        install("rsna-pneumonia", replica.root, tmp_path / "cards")


def test_kneemri_pickles_are_converted_and_a_pickle_that_runs_code_is_refused(tmp_path):
    import nibabel as nib

    replica = make_replica("kneemri", tmp_path / "knee")
    with pytest.raises(PublicDatasetError, match="--to DIR"):
        install("kneemri", replica.root, tmp_path / "cards")
    with pytest.raises(PublicDatasetError, match="inside the download"):
        install("kneemri", replica.root, tmp_path / "cards", converted_to=replica.root / "nii")
    installed = install("kneemri", replica.root, tmp_path / "cards", converted_to=tmp_path / "nii")
    assert installed.card.path == (tmp_path / "nii").resolve()
    volume = nib.load(tmp_path / "nii" / "volumes" / "329637-8.nii.gz")
    assert volume.shape == (16, 16, 6)  # (columns, rows, slices) from the pickled (slices, rows, columns)

    proof = tmp_path / "ran"
    hostile = replica.root / "vol01" / "329637-8.pck"
    hostile.write_bytes(pickle.dumps(_RunsCode(f"touch {proof}")))
    with pytest.raises(PublicDatasetError, match="posix.system|os.system") as err:
        install("kneemri", replica.root, tmp_path / "cards2", converted_to=tmp_path / "nii2")
    assert "329637-8.pck" in str(err.value) and not proof.exists()


class _RunsCode:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def test_a_negative_number_is_its_own_label_value():
    assert label_key("-1.0") == "-1.0" != label_key("1.0")
    assert label_key("No_Mass") == label_key("no mass")


def test_data_replica_and_prepare_from_the_command_line(settings_env, tmp_path):
    from medbuilder.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["data", "replica", "cc-ccii", "--to", str(tmp_path / "ccii")])
    assert made.exit_code == 0 and "generated replica" in made.output
    listed = runner.invoke(app, ["data", "list"])
    assert "cc-ccii" in listed.output and "<<" not in listed.output
    asked = runner.invoke(app, ["data", "prepare", "cc-ccii"])
    assert asked.exit_code == 2 and "--from FOLDER" in asked.output
    prepared = runner.invoke(app, ["data", "prepare", "cc-ccii", "--from", str(tmp_path / "ccii")])
    assert prepared.exit_code == 0, prepared.output
    assert "18 of 18 images indexed" in prepared.output
    assert (settings_env / "datacards" / "cc-ccii.yaml").is_file()
    shown = runner.invoke(app, ["datacards", "show", "cc-ccii"])
    assert shown.exit_code == 0 and "GENERATED" in shown.output
    wrong = runner.invoke(app, ["data", "prepare", "btcv", "--from", str(tmp_path / "ccii")])
    assert wrong.exit_code == 2 and "Abdomen/RawData/Training/img" in wrong.output
    assert "published layout" in wrong.output


def test_data_prepare_converts_kneemri_into_the_data_folder(settings_env, tmp_path):
    from medbuilder.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["data", "replica", "kneemri", "--to", str(tmp_path / "knee")]).exit_code == 0
    prepared = runner.invoke(app, ["data", "prepare", "kneemri", "--from", str(tmp_path / "knee")])
    assert prepared.exit_code == 0, prepared.output
    assert "6 of 6 images indexed" in prepared.output
    assert len(list((settings_env / "data" / "kneemri" / "volumes").glob("*.nii.gz"))) == 6
