"""The installed `medbuilder` command answers --help on every subcommand."""

import subprocess
import sys
from pathlib import Path

import pytest

MEDBUILDER = Path(sys.executable).parent / "medbuilder"
SUBCOMMANDS = [
    [], ["datacards"], ["datacards", "list"], ["datacards", "show"], ["datacards", "validate"],
    ["datacards", "add"], ["data"], ["data", "list"], ["data", "prepare"], ["template"],
    ["template", "list"], ["template", "train"], ["build"], ["resume"], ["approve"], ["stage"], ["predict"],
    ["runs"], ["bench"], ["bench", "shortcut"], ["llm", "check"], ["up"], ["down"], ["status"], ["watch"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "medbuilder")
def test_help(words):
    out = subprocess.run([str(MEDBUILDER), *words, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: medbuilder" in out.stdout


def test_a_stage_run_alone_reports_its_own_error(tmp_path):
    """`medbuilder stage RUN evaluate` outside a flow: the evaluation's own error, in one line, exit 2; the
    traceback in the run's logs (no Prefect run context is needed on the way)."""
    from medbuilder.protocol.artifacts import RunRecord
    from medbuilder.protocol.run_folder import RunFolder

    run = RunFolder(tmp_path / "runs" / "r1")
    run.write("run.json", RunRecord(run_id="r1", request="classify brain slices please", core="offline",
                                    approve="auto"))
    run.write("plan.json", {"status": "ok", "request": "x", "task": "diagnosis", "metric": "auroc"})
    run.workspace.mkdir(parents=True)
    (run.workspace / "metrics.json").symlink_to("/etc/hostname")  # a link an agent left: refused, not followed
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MEDBUILDER_RUNS_DIR": str(tmp_path / "runs")}
    out = subprocess.run([str(MEDBUILDER), "stage", "r1", "evaluate"], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 2, out.stderr
    assert "stage evaluate of run r1 stopped: the round's metrics.json cannot be kept" in out.stderr
    assert "Traceback" not in out.stderr and "MissingContextError" not in out.stderr + out.stdout
    assert "Traceback" in (run.root / "logs" / "stage-evaluate-0.log").read_text()
