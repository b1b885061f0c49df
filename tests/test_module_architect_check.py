"""The Module Architect's check: it reuses the agent's passing batch check when nothing ran after it, and
otherwise runs the (agent-written) dataloader itself, in the sandbox. Code that differs from the
template is a finding of its own (medbuilder evaluates with its own copy), besides the batch check."""

from __future__ import annotations

import json
from types import SimpleNamespace

from medbuilder.agents.roles.base import RoleContext
from medbuilder.agents.roles.module_architect import BATCH_CHECK, check
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import get_settings

DATALOADER = """
from pathlib import Path
Path("ran.txt").write_text("yes")
try:
    Path({scan!r}).write_text("overwritten")
    print("dataset written")
except OSError as err:
    print("dataset refused:", err)
print("dataloader OK")
raise SystemExit({exit_code})
"""


def _context(data_env, exit_code: int = 0) -> tuple[RoleContext, dict]:
    scan = data_env / "data" / "scans" / "a.txt"
    scan.parent.mkdir(parents=True)
    scan.write_text("raw")
    run = RunFolder.new(data_env / "runs")
    ws = run.workspace
    ws.mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "train.py"):
        (ws / name).write_text("")
    (ws / "index").mkdir()
    for name in ("train.json", "test.json"):
        (ws / "index" / name).write_text("[]")
    (ws / "config.json").write_text(json.dumps({"index_dir": str(ws / "index")}))
    (ws / "dataloader.py").write_text(DATALOADER.format(scan=str(scan), exit_code=exit_code))
    ctx = RoleContext(run, get_settings(), "a request", 1, None, SimpleNamespace(task="diagnosis"),
                      SimpleNamespace(path=scan.parent))
    return ctx, {"scan": scan, "ws": ws}


def _split(problems: list[str]) -> tuple[list[str], list[str]]:
    """(batch-check findings, the others); the others here: the edited template code, always."""
    batch = [p for p in problems if BATCH_CHECK in p]
    others = [p for p in problems if p not in batch]
    assert len(others) == 1 and others[0].startswith("dataloader.py, model.py, train.py differ from the diagnosis")
    return batch, others


def _agent_ran(ctx: RoleContext, last_tool: str, output: str) -> None:
    traj = Trajectory(role="module_architect", attempt=1, core="offline",
                      path=ctx.run.root / "trajectories" / "module_architect-1.json")
    traj.add_step("run_script", {"command": BATCH_CHECK}, True, output, 1.0)
    if last_tool != "run_script":
        traj.add_step(last_tool, {"path": "dataloader.py"}, True, "written", 0.0)
    traj.finish("submitted", final="done")
    log = ctx.run.root / "logs" / "module_architect-1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {BATCH_CHECK}\n{output}\n")


def test_reuses_the_agents_passing_batch_check_when_it_was_the_last_action(data_env):
    ctx, paths = _context(data_env)
    _agent_ran(ctx, "run_script", "train batch: ...\ndataloader OK")
    filled = ctx.run.workspace / "config.json"
    check(ctx)  # the first check fills config.json, so it runs the batch check itself
    assert filled.read_text() != '{"index_dir": "%s"}' % ctx.run.index_dir and (paths["ws"] / "ran.txt").exists()
    (paths["ws"] / "ran.txt").unlink()
    assert _split(check(ctx))[0] == []  # filling changes nothing now: the agent's own check stands
    assert not (paths["ws"] / "ran.txt").exists()
    assert ctx.run.read_json("batch_check.json")["ran"] == "by the agent, its last action"


def test_runs_the_batch_check_in_the_sandbox_when_the_agent_changed_files_after_it(data_env):
    ctx, paths = _context(data_env)
    _agent_ran(ctx, "write_file", "dataloader OK")
    assert _split(check(ctx))[0] == []
    record = ctx.run.read_json("batch_check.json")
    assert record["ran"] == "by the check" and (paths["ws"] / "ran.txt").exists()
    assert "dataset refused" in record["output"] and "Read-only file system" in record["output"]
    assert paths["scan"].read_text() == "raw"


def test_a_failing_batch_check_is_a_problem_naming_the_exit_code(data_env):
    ctx, _ = _context(data_env, exit_code=3)
    batch, _ = _split(check(ctx))
    assert len(batch) == 1 and "failed (exit code 3)" in batch[0]
    assert json.loads(ctx.run.path("batch_check.json").read_text())["exit_code"] == 3
