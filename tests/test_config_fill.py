"""medbuilder fills the config.json a role wrote: its keys, the rest from template.yaml, recorded outside the
workspace; a config it cannot fill comes back as findings for the role."""

from __future__ import annotations

import json
import os

import pytest

from medbuilder.protocol.templates.complete import complete_config
from medbuilder.protocol.templates.spec import get_template


@pytest.fixture()
def run_root(tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "index").mkdir(parents=True)
    for name in ("train.json", "test.json"):
        (workspace / "index" / name).write_text("[]")
    return tmp_path


def _fill(run_root, config, role="module_architect") -> list[str]:
    workspace = run_root / "workspace"
    if config is not None:
        (workspace / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return complete_config("diagnosis", workspace, workspace / "index", run_root / "template_fill.json", role)


def test_missing_keys_take_the_templates_defaults_and_the_fill_is_recorded(run_root):
    assert _fill(run_root, {"index_dir": "index", "image_size": [64, 64]}) == []
    config = json.loads((run_root / "workspace" / "config.json").read_text())
    assert set(config) == set(get_template("diagnosis").keys)
    assert config["image_size"] == [64, 64] and config["model"] == "cnn" and config["roi_crop"] is False
    assert config["index_dir"] == str((run_root / "workspace" / "index").resolve())
    record = json.loads((run_root / "template_fill.json").read_text())
    assert record["sources"]["image_size"] == "module_architect" and record["sources"]["model"] == "default"

    config["epochs"] = 3  # the next role rewrites the whole file, changing one key
    assert _fill(run_root, config, role="model_trainer") == []
    sources = json.loads((run_root / "template_fill.json").read_text())["sources"]
    assert (sources["epochs"], sources["image_size"], sources["model"]) == ("model_trainer", "module_architect",
                                                                             "default")


@pytest.mark.parametrize("config, words", [
    (None, "the workspace has no config.json"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list"),
    ({"imagesize": [64, 64]}, "unknown key(s) ['imagesize']"),
    ({"image_size": "big"}, "image_size"),
    ({"index_dir": "/etc"}, "it must be"),
], ids=["missing", "not-json", "list", "unknown-key", "wrong-type", "other-index"])
def test_a_config_that_cannot_be_filled_is_a_finding_and_nothing_is_recorded(run_root, config, words):
    problems = _fill(run_root, config)
    assert len(problems) == 1 and words in problems[0], problems
    assert not (run_root / "template_fill.json").exists()


def test_a_config_planted_as_a_link_is_not_followed(run_root, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"index_dir": "index"}))
    os.symlink(outside, run_root / "workspace" / "config.json")
    problems = _fill(run_root, None)
    assert len(problems) == 1 and "is a link" in problems[0]
    assert json.loads(outside.read_text()) == {"index_dir": "index"}
