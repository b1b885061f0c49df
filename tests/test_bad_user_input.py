"""Bad input from the clinician: each gets a clear error naming the field and the fix, and no run is harmed.

The real CLI (typer app, in-process), the shipped datacards, a real Prefect server
for the request that reaches the Task Manager.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import medbuilder.flows.build  # noqa: F401  Prefect binds its log handlers to the real streams, not CliRunner's
from medbuilder.cli import app
from medbuilder.protocol.artifacts import RunRecord
from medbuilder.protocol.run_folder import RunFolder

REQUEST = "Classify brain MRI slices as tumour or no tumour"
runner = CliRunner()


def _runs(base) -> list:
    return [p for p in (base / "runs").iterdir() if (p / "run.json").exists()]


@pytest.mark.parametrize("request_text", ["", "   \n\t "])
def test_empty_request_is_refused_before_a_run_starts(data_env, request_text):
    result = runner.invoke(app, ["build", request_text, "--approve", "auto"])
    assert result.exit_code == 2
    assert f"the request {request_text!r} is empty or too short to act on" in result.stderr
    assert "describe the model in a sentence" in result.stderr and "Classify brain MRI slices" in result.stderr
    assert _runs(data_env) == []


def test_unknown_dataset_lists_the_known_ones(data_env):
    result = runner.invoke(app, ["build", REQUEST, "--dataset", "nosuch", "--approve", "auto"])
    assert result.exit_code == 2
    assert "--dataset: unknown dataset 'nosuch'. Known datasets: " in result.stderr
    assert "br35h" in result.stderr and "medbuilder datacards add FILE" in result.stderr
    assert _runs(data_env) == []


def test_nonsense_request_says_no_dataset_fits(prefect_api, data_env):
    result = runner.invoke(app, ["build", "asdf qwerty zxcv", "--approve", "auto"])
    assert result.exit_code == 1, (result.output, result.exception)
    [run_dir] = _runs(data_env)
    assert f"error: no dataset fits the request (run {run_dir.name})" in result.stderr
    assert "Datacards considered (in " in result.stderr
    assert "  - br35h: text similarity" in result.stderr  # every card, with why it does not fit
    assert "medbuilder datacards add FILE" in result.stderr and f"medbuilder resume {run_dir.name}" in result.stderr
    run = RunFolder(run_dir)
    assert run.read_json("run.json")["status"] == "no_fit" and not run.exists("workspace/index")


def _waiting_run(base, gate: str) -> RunFolder:
    """A run folder paused at `gate`, its flow process this (live) process: the answer is validated first."""
    run = RunFolder.new(base / "runs", "waiting")
    run.write("run.json", RunRecord(run_id=run.run_id, request=REQUEST, core="offline", approve="prefect",
                                    flow_run_id="00000000-0000-0000-0000-000000000001", status="running"))
    run.write("gates/pending.json", {"gate": gate, "flow_run_id": "00000000-0000-0000-0000-000000000001",
                                     "asked": "now"})
    stat = open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()
    import socket

    run.write("process.json", {"pid": os.getpid(), "start_ticks": int(stat[19]), "host": socket.gethostname(),
                               "started": "now"})
    return run


@pytest.mark.parametrize("gate,args,message", [
    ("review-0", ["--action", "maybe"],
     "action (--action): Input should be 'approve', 'refine' or 'reject' (allowed: approve, refine, reject)"),
    ("review-0", ["--action", "approve", "--max-reliance", "7"],
     "max_reliance (--max-reliance): Input should be less than or equal to 1 (a fraction from 0 to 1, e.g. 0.2)"),
    ("review-0", ["--action", "refine"],
     "action 'refine' needs 'feedback': say in plain words what should change"),
    ("dataset-1", ["--max-reliance", "0.2"],
     "gate dataset-1 does not take max_reliance (--max-reliance); it takes action (--action), dataset (--dataset), "
     "layout (--layout), reason (--reason), who (--who)"),
    ("dataset-1", ["--action", "pick", "--dataset", "nosuch"],
     "gate dataset-1: dataset (--dataset): unknown dataset 'nosuch'. Known datasets: "),
    ("dataset-1", ["--action", "pick"],
     "action 'pick' needs 'dataset': the name of the datacard to use instead"),
    ("dataset-1", ["--action", "correct"],
     "action 'correct' needs 'layout': the corrected layout (JSON, or a file holding it)"),
])
def test_gate_answer_that_does_not_validate(data_env, gate, args, message):
    run = _waiting_run(data_env, gate)
    result = runner.invoke(app, ["approve", str(run.root), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert json.loads(run.path("gates/pending.json").read_text())["gate"] == gate  # still waiting
    assert not run.path("decisions").exists()


def test_corrected_layout_that_leads_outside_the_dataset_is_refused(data_env, tmp_path):
    run = _waiting_run(data_env, "dataset-1")
    bad = tmp_path / "layout.json"
    bad.write_text('{"images": {"roots": ["../elsewhere"]}, "label": {"kind": "folder", "depth": 0}}')
    result = runner.invoke(app, ["approve", str(run.root), "--action", "correct", "--layout", str(bad)])
    assert result.exit_code == 2 and "leads outside the dataset root" in result.stderr
    assert run.exists("gates/pending.json") and not run.exists("decisions/dataset-1.json")


def test_answer_to_a_run_not_waiting_says_what_to_do(data_env):
    run = _waiting_run(data_env, "dataset-1")
    run.path("gates/pending.json").unlink()
    result = runner.invoke(app, ["approve", str(run.root)])
    assert result.exit_code == 2
    assert f"run {run.run_id} is not waiting at a gate (status: running)" in result.stderr
    missing = runner.invoke(app, ["approve", "no-such-run"])
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.stderr and "Recent runs: " in missing.stderr
