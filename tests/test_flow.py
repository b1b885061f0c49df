"""The build_model flow on a real Prefect server, real training on a few real images."""

from __future__ import annotations

import gc
import json
import os
import subprocess

import pytest
from prefect import flow

from flow_helpers import make_csv_dataset, write_card
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.run_folder import RunFolder

REQUEST = "Classify brain MRI slices as tumour or no tumour"
pytestmark = pytest.mark.slow


def test_no_dataset_fits(prefect_api, data_env):
    from medbuilder.flows.build import build_model

    summary = build_model(request="Segment the liver in abdominal CT scans", approve="auto")
    assert summary["status"] == "no_fit"
    assert gc.get_freeze_count() == 0  # the Task Manager's stage froze the heap; the build's end gave it back
    assert summary["reasons"][0] == "no dataset fits"
    assert any("brain-mask-3d" in r and "modality" in r for r in summary["reasons"])
    run = RunFolder(summary["run_dir"])
    assert not run.exists("workspace/index") and not run.exists("bundle")


def test_data_engineer_reads_both_columns_and_a_bad_correction_ends_with_no_alternative(
        prefect_api, data_env, monkeypatch):
    """The CSV's column named 'label' holds T1/T2; the Data Engineer takes 'tumour_status' at once and
    records why. A clinician's correction that points at 'label' fails the check, and the retry,
    which would repeat it unchanged, is not run: the role ends with exit_no_alternative."""
    from medbuilder.agents.roles.base import RoleGaveUp
    from medbuilder.protocol.layout import Layout
    from medbuilder.settings import get_settings
    from medbuilder.tasks.stage_tasks import stage_task

    write_card(data_env / "cards", make_csv_dataset(data_env / "mri-csv"))
    monkeypatch.setenv("MEDBUILDER_DATACARDS_DIR", str(data_env / "cards"))
    get_settings.cache_clear()
    run = RunFolder.new(data_env / "runs")
    run.write("request.json", {"text": REQUEST, "dataset": "mri-csv"})

    @flow
    def index_only(run_dir: str) -> None:
        for role in ("task_manager", "data_engineer"):
            stage_task(role, 2)(run_dir, role, "offline")

    index_only(str(run.root))
    layout = Layout.model_validate_json(run.path("layout.json").read_text())
    assert layout.label.column == "tumour_status" and layout.resolved
    assert next(c for c in layout.evidence if c.part == "layout").evidence == "matched 16 of 16 images"
    label_choice = next(c for c in layout.evidence if c.part == "label")
    assert any("column 'label'" in a and "T1" in a for a in label_choice.alternatives)
    stage = run.read_json("stages/data_engineer.json")
    assert stage["status"] == "completed" and stage["attempts"] == 1
    labels = {r["label"] for r in json.loads((run.index_dir / "train.json").read_text())}
    assert labels == {"no", "yes"}

    wrong = layout.model_copy(update={"label": layout.label.model_copy(update={"column": "label"})})
    run.write("decisions/dataset-1.json", {"gate": "dataset-1", "action": "correct", "who": "dr-a", "via": "cli",
                                           "layout": wrong.model_dump(mode="json", exclude_none=True)})

    @flow
    def engineer_again(run_dir: str) -> None:
        stage_task("data_engineer", 2)(run_dir, "data_engineer-2", "offline")

    with pytest.raises(RoleGaveUp) as gave_up:
        engineer_again(str(run.root))
    assert any("'t1' (8)" in p and "none of the card's labels" in p for p in gave_up.value.problems)
    assert Trajectory.load(run.root / "trajectories" / "data_engineer-2.json").status != "exit_no_alternative"
    third = Trajectory.load(run.root / "trajectories" / "data_engineer-3.json")
    assert third.status == "exit_no_alternative" and not third.steps
    assert not run.exists("trajectories/data_engineer-4.json")


TERMINAL_GATE = """
import sys
from prefect import flow
from medbuilder.flows.gates import ask
from medbuilder.protocol.run_folder import RunFolder

@flow
def one_gate(run_dir: str) -> str:
    decision = ask(RunFolder(run_dir), "review-0", "## Review\\nAUROC 0.9", "terminal", timeout_s=60, poll_s=1)
    return decision.model_dump_json()

print("DECISION", one_gate(sys.argv[1]))
"""


def test_terminal_gate_asks_on_the_console(prefect_api, tmp_path):
    # one line per ReviewDecision field: action, feedback, reason, max_reliance, max_metric_drop, threshold,
    # target, target_value, calibrate, confounder, measure, strategies, who
    answers = "refine\nuse larger images\n\n0.2\n" + "\n" * 8 + "Dr Lee\n"
    done = subprocess.run([os.sys.executable, "-c", TERMINAL_GATE, str(tmp_path)], input=answers, text=True,
                          capture_output=True, env={**os.environ, "PREFECT_API_URL": prefect_api}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## Review" in done.stdout
    decision = json.loads((tmp_path / "decisions" / "review-0.json").read_text())
    assert (decision["action"], decision["feedback"], decision["who"], decision["via"]) == \
        ("refine", "use larger images", "Dr Lee", "terminal")
    assert (decision["max_reliance"], decision["max_metric_drop"]) == (0.2, None)
