"""The typed run folder: the dataset root stored when the dataset is chosen, one request in two files."""

from __future__ import annotations

from pathlib import Path

from medbuilder.protocol.artifacts import Request, RunRecord
from medbuilder.protocol.registry import Registry
from medbuilder.protocol.run_folder import RunFolder
from medbuilder import REPO_ROOT


def _run(tmp_path: Path, data_dir: Path) -> RunFolder:
    run = RunFolder(tmp_path / "r1")
    run.write("request.json", Request(text="Classify brain MRI slices", dataset=None))
    run.write("run.json", RunRecord(run_id="r1", request="Classify brain MRI slices", core="offline",
                                    approve="auto", data_dir=str(data_dir)))
    return run


def test_the_dataset_root_is_the_one_resolved_when_the_dataset_was_chosen(tmp_path, monkeypatch):
    card = Registry(REPO_ROOT / "datacards").get("br35h")
    run = _run(tmp_path, tmp_path / "data-then")
    assert run.dataset_root is None and run.datacard() is None
    root = run.choose_dataset(card)
    assert root == (tmp_path / "data-then" / card.path).resolve()
    monkeypatch.setenv("MEDBUILDER_DATA_DIR", str(tmp_path / "data-now"))  # settings that changed since
    assert RunFolder(run.root).dataset_root == root and run.record().dataset_root == str(root)
    assert run.datacard().name == "br35h"


def test_a_dataset_picked_later_is_the_same_in_request_and_run_record(tmp_path):
    run = _run(tmp_path, tmp_path / "data")
    run.ask_for_dataset("synth-cxr-drain")
    assert run.request().dataset == run.record().dataset_hint == "synth-cxr-drain"
    assert run.request().text == "Classify brain MRI slices"


def test_summaries_are_checked_as_they_are_written(tmp_path):
    import pytest
    from pydantic import ValidationError

    run = _run(tmp_path, tmp_path / "data")
    run.write_summary(0, {"round": 0, "metric": "auroc", "value": 0.9, "ci95": [0.8, 0.95], "extras": {}})
    assert run.summary(0).value == 0.9 and run.summary(0).model_dump()["extras"] == {}
    from medbuilder.review.compare import card_sections, earlier_summaries

    assert "interpretability" not in earlier_summaries(run, 1)[0]  # read back as written: no key added
    assert card_sections(run, 0) == {}  # a round without an interpretability report (anomaly, reports)
    assert run.summary(1) is None and run.report_dir(0) == run.root / "report" / "round-0"
    with pytest.raises(ValidationError):
        run.write_summary(1, {"round": 1, "value": 0.9})  # no metric


def test_every_modelled_artifact_reads_what_its_writer_writes(tmp_path):
    from medbuilder.protocol.run_folder import ARTIFACTS

    modelled = {name: a.model for name, a in ARTIFACTS.items() if a.model}
    assert {"run", "request", "plan", "datacard", "decision", "layout", "indexing_report", "feedback", "stage",
            "objective", "refinement", "failure"} <= set(modelled)
    run = _run(tmp_path, tmp_path / "data")
    assert run.read(ARTIFACTS["request"].path, modelled["request"]).text == "Classify brain MRI slices"
