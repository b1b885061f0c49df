"""A user's own folder: `datacards draft` writes a card from the files, and a card for a layout the
shipped sets do not use builds to a model with `--approve auto`. Real images (Br35H, pydicom's MR
header, Colin27) in generated arrangements (medbuilder.bench.layout_families)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from medbuilder.bench.layout_families import FAMILIES, generate
from medbuilder.cli import app
from medbuilder.protocol.tools import prestart

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("own-data")
    names = ("prefix-code", "dicom-tag-label", "dicom-series-json", "nnunet-raw", "patient-folders-table")
    return {name: generate(FAMILIES[name], base) for name in names}


@pytest.mark.parametrize("name,task,dimension,labels,modality,label_kind", [
    ("prefix-code", "diagnosis", "2D", ["M", "N"], "EDIT", "filename"),
    ("dicom-tag-label", "diagnosis", "2D", ["no tumour", "tumour"], "MRI", "dicom_tag"),
    ("dicom-series-json", "diagnosis", "3D", ["no tumour", "tumour"], "MRI", "table"),
    ("nnunet-raw", "segmentation", "3D", ["background", "brain"], "EDIT", None),
])
def test_draft_card_reads_the_layout_counts_and_modality(folders, name, task, dimension, labels, modality,
                                                         label_kind):
    from medbuilder.agents.layout.draft import draft_card

    card, questions = draft_card(folders[name].root)
    assert (card["tasks"], card["dimension"], card["label_names"]) == ([task], dimension, labels)
    assert card["modality"].startswith(modality)
    layout = card["layout"]
    assert (layout.get("label") or {}).get("kind") == label_kind
    assert layout["images"].get("dicom_series", False) is (name == "dicom-series-json")
    if task == "segmentation":
        assert layout.get("masks")
    counts = card["description"].splitlines()[1]
    assert counts.startswith(f"{len(folders[name].truth.images)} images")
    assert questions == []


def test_draft_then_add_from_the_command_line(folders, settings_env, tmp_path):
    target = tmp_path / "mine.yaml"
    drafted = runner.invoke(app, ["datacards", "draft", str(folders["patient-folders-table"].root), "--name", "mine",
                                  "--out", str(target)])
    assert drafted.exit_code == 0, drafted.output
    assert "wrote" in drafted.output and "labels ['negative', 'positive']" in drafted.output
    again = runner.invoke(app, ["datacards", "draft", str(folders["patient-folders-table"].root), "--out", str(target)])
    assert again.exit_code == 2 and "never overwrites" in again.stderr

    text = target.read_text()
    assert text.startswith("# Draft datacard") and "EDIT" in text
    card = yaml.safe_load(text)
    assert card["layout"]["patient"]["column"] == "patient_id"
    refused = runner.invoke(app, ["datacards", "validate", str(target)])
    assert refused.exit_code != 0 and "field 'title': still says 'EDIT" in refused.stderr
    card.update(title="My brain MRI", modality="MRI", anatomy="brain", licence="internal use",
                source="the hospital's PACS export", description="Brain MRI slices, one folder per patient. "
                + card["description"].split("\n", 1)[1])
    target.write_text(yaml.safe_dump(card, sort_keys=False))
    added = runner.invoke(app, ["datacards", "add", str(target)])
    assert added.exit_code == 0, added.output
    shown = runner.invoke(app, ["datacards", "show", "mine"])
    assert shown.exit_code == 0 and "patients.csv" in shown.output


def test_draft_of_a_folder_with_nothing_to_read(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    result = runner.invoke(app, ["datacards", "draft", str(tmp_path), "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and str(tmp_path) in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.slow
def test_a_new_layout_builds_to_a_model_with_approve_auto(folders, prefect_api, settings_env, monkeypatch, tmp_path):
    """Labels in a table keyed by a patient id that names a folder (no path column): one of the layouts that
    stopped at the Data Engineer before. The card is the one a user writes: free text, label names, no layout."""
    from medbuilder.settings import get_settings

    monkeypatch.setenv("MEDBUILDER_TRAIN_TIME_LIMIT_S", "8")
    monkeypatch.setenv("MEDBUILDER_ECHO_SCRIPTS", "false")
    get_settings.cache_clear()
    family = folders["patient-folders-table"]
    card_file = tmp_path / "card.yaml"
    card_file.write_text(yaml.safe_dump(family.card, sort_keys=False))
    assert runner.invoke(app, ["datacards", "add", str(card_file)]).exit_code == 0

    built = runner.invoke(app, ["build", "Classify brain MRI slices as tumour or no tumour",
                                "--dataset", family.card["name"], "--approve", "auto"])
    assert built.exit_code == 0, built.output
    run_dir = next((settings_env / "runs").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "delivered" and (run_dir / "bundle").is_dir()
    layout = json.loads((run_dir / "layout.json").read_text())
    assert layout["label"]["join"] == "folder" and layout["patient"]["kind"] == "table"
    report = json.loads((run_dir / "indexing_report.json").read_text())
    assert report["records"] == len(family.truth.images) and report["patients"] == 8 and report["questions"] == []
    train, test = (json.loads((run_dir / "workspace" / "index" / f"{s}.json").read_text()) for s in ("train", "test"))
    assert not {r["patient_id"] for r in train} & {r["patient_id"] for r in test}  # each patient in one split
    decision = json.loads((run_dir / "decisions" / "dataset-1.json").read_text())
    assert (decision["action"], decision["via"]) == ("approve", "auto")
    for role in ("module_architect", "model_trainer"):  # the batch check and train.py: Pythons started ahead
        assert "Python started ahead with torch, monai imported" in (run_dir / "logs" / f"{role}-1.log").read_text()
    workspace = str((run_dir / "workspace").resolve())
    assert not any(key[0] == workspace for key in prestart.POOL._queued)  # the build's end discarded the rest
