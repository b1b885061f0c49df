"""Datacards: shipped cards validate; broken ones fail naming file, field and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medbuilder.cli import app
from medbuilder.protocol.registry import DatacardError, Registry, load_card

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "datacards").glob("*.yaml"))
runner = CliRunner()

GOOD = {
    "name": "my-set",
    "title": "My set",
    "description": "Two folders, yes/ and no/, of brain MRI JPEG slices; the folder name is the label.",
    "path": "my-set",
    "tasks": ["diagnosis"],
    "modality": "MRI",
    "dimension": "2D",
    "anatomy": "brain",
    "label_names": ["no", "yes"],
    "file_formats": ["jpg"],
    "licence": "CC0",
    "provenance": "real",
    "source": "a hospital export",
}


def _write(folder: Path, data: dict | str, name: str = "card.yaml") -> Path:
    file = folder / name
    file.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return file


def test_shipped_cards_exist_and_validate():
    assert len(SHIPPED) >= 5, "one datacard per shipped dataset"
    cards = Registry(REPO / "datacards").cards()
    assert {"br35h"} <= set(cards)
    result = runner.invoke(app, ["datacards", "validate"])
    assert result.exit_code == 0, result.output


def test_generated_cards_say_so():
    for card in Registry(REPO / "datacards").cards().values():
        if card.provenance == "generated":
            assert "generated" in (card.title + card.description).lower()


@pytest.mark.parametrize(
    "change, field, fix_words",
    [
        ({"tasks": ["tumour detection"]}, "tasks.0", "diagnosis"),
        ({"dimension": "4D"}, "dimension", "allowed values"),
        ({"title": None}, "title", ""),
        ({"colour": "blue"}, "colour", "remove it"),
        ({"name": "My Set"}, "name", ""),
        ({"provenance": "generated"}, "(card)", ""),
    ],
)
def test_broken_card_names_field_and_fix(tmp_path, change, field, fix_words):
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    file = _write(tmp_path, data)
    with pytest.raises(DatacardError) as caught:
        load_card(file)
    assert caught.value.file == str(file)
    assert caught.value.field == field
    assert fix_words in caught.value.fix
    result = runner.invoke(app, ["datacards", "validate", str(file)])
    assert result.exit_code == 1
    assert f"field '{field}'" in result.output and str(file) in result.output


def test_malformed_yaml_and_json_name_the_line(tmp_path):
    bad_yaml = _write(tmp_path, "name: x\ntitle: [unclosed\n", "bad.yaml")
    with pytest.raises(DatacardError, match=r"bad.yaml: field '\(file\)': malformed YAML at line"):
        load_card(bad_yaml)
    bad_json = _write(tmp_path, '{"name": "x",\n "title": }', "bad.json")
    with pytest.raises(DatacardError, match=r"malformed JSON at line 2"):
        load_card(bad_json)


def test_missing_path_is_an_error_unless_preparable(settings_env):
    file = _write(settings_env, GOOD)
    result = runner.invoke(app, ["datacards", "validate", str(file)])
    assert result.exit_code == 1 and "field 'path'" in result.output and "does not exist" in result.output
    preparable = _write(settings_env, {**GOOD, "prepare": "my-set"}, "prep.yaml")
    result = runner.invoke(app, ["datacards", "validate", str(preparable)])
    assert result.exit_code == 0 and "medbuilder data prepare my-set" in result.output
    result = runner.invoke(app, ["datacards", "validate", "--require-data", str(preparable)])
    assert result.exit_code == 1


def test_add_copies_and_refuses_duplicates(settings_env):
    (settings_env / "data" / "my-set").mkdir()
    file = _write(settings_env, GOOD)
    result = runner.invoke(app, ["datacards", "add", str(file)])
    assert result.exit_code == 0, result.output
    assert (settings_env / "datacards" / "my-set.yaml").exists()
    result = runner.invoke(app, ["datacards", "add", str(file)])
    assert result.exit_code == 2 and "already exists" in result.output
    listed = runner.invoke(app, ["datacards", "list"])
    assert "my-set" in listed.output
    shown = runner.invoke(app, ["datacards", "show", "my-set"])
    assert "brain MRI JPEG" in shown.output


def test_duplicate_names_in_folder(settings_env):
    _write(settings_env / "datacards", GOOD, "a.yaml")
    _write(settings_env / "datacards", GOOD, "b.yaml")
    with pytest.raises(DatacardError, match="already used by"):
        Registry(settings_env / "datacards").cards()


def test_unknown_dataset_lists_known_ones(settings_env):
    shutil.copy(SHIPPED[0], settings_env / "datacards")
    result = runner.invoke(app, ["datacards", "show", "nope"])
    assert result.exit_code == 2 and "unknown dataset 'nope'" in result.output
    assert load_card(SHIPPED[0]).name in result.output
