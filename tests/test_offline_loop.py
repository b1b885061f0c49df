"""The offline core is a scripted model in the LLM core's loop: it decides from the tool results it is given,
its trajectory is the loop's, and the Model Trainer's feedback is typed."""

from __future__ import annotations

import json
import threading

import pytest

from medbuilder.agents.core import AgentExit, RoleJob
from medbuilder.agents.hyperparameters import choose_hyperparameters
from medbuilder.agents.loop import ToolLoop
from medbuilder.agents.scripted import OfflineCore
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.tools import Workspace


def _run(tmp_path, policy, tools=("write_file", "read_files", "list_files"), max_steps=10):
    trajectory = Trajectory(role="tester", attempt=1, core="offline", path=tmp_path / "trajectory.json")
    workspace = Workspace.create(tmp_path / "ws", output_chars=2000, script_timeout_s=20)
    job = RoleJob("tester", "You are a test agent.", "Write a file, then read it back.", policy, {})
    core = OfflineCore(max_steps)
    assert isinstance(core, ToolLoop)  # one loop for both cores
    try:
        result = core.run(job, Toolbox(workspace, list(tools), trajectory), trajectory)
    except AgentExit as exit_:
        result = exit_
    return result, trajectory


def test_the_policy_reads_what_the_loop_hands_back(tmp_path):
    seen = {}

    def policy(job, act):
        act.expect("write_file", "Write it.", path="a.txt", content="forty-two\n")
        shown = act.expect("read_files", "Read it back.", paths=["a.txt"])
        seen["text"], seen["thread"] = shown.result[0].text, threading.current_thread().name
        return f"read {shown.result[0].text.strip()}"

    final, trajectory = _run(tmp_path, policy)
    assert final == "read forty-two" and "forty-two" in seen["text"]
    assert seen["thread"] == "policy-tester"  # the policy only decides: the loop ran the tools
    assert [s.tool for s in trajectory.steps] == ["write_file", "read_files"] and trajectory.actions == 2
    roles = [m["role"] for m in trajectory.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert trajectory.messages[2]["tool_calls"][0]["name"] == "write_file"
    assert trajectory.tokens.total == 0 and trajectory.tokens.estimated_replies == 0


def test_a_failed_call_comes_back_as_an_observation_and_an_exit_ends_the_attempt(tmp_path):
    def policy(job, act):
        missing = act("read_files", "Read a file that is not there.", paths=["nope.txt"])
        assert not missing.ok and missing.text.startswith("Error:")
        act.expect("read_files", "Again, expecting it.", paths=["nope.txt"])
        return "unreachable"

    result, trajectory = _run(tmp_path, policy)
    assert isinstance(result, AgentExit) and result.status == "exit_error" and "read_files failed" in str(result)
    assert trajectory.actions == 2


def test_the_step_limit_ends_the_loop_and_unwinds_the_policy(tmp_path):
    def policy(job, act):
        for i in range(50):
            act("write_file", path=f"f{i}.txt", content="x")
        return "unreachable"

    result, trajectory = _run(tmp_path, policy, max_steps=3)
    assert isinstance(result, AgentExit) and result.status == "exit_step_limit" and trajectory.actions == 3
    assert not any(t.name == "policy-tester" and t.is_alive() for t in threading.enumerate())


def test_a_bug_in_a_policy_surfaces_where_the_core_was_called(tmp_path):
    def policy(job, act):
        raise KeyError("a missing context value")

    with pytest.raises(KeyError, match="a missing context value"):
        _run(tmp_path, policy)


def test_training_keys_adjust_to_typed_feedback(tmp_path):
    import template_data

    index = DataIndex.read(template_data.br35h_index(tmp_path, per_class=6), "diagnosis")
    base, _ = choose_hyperparameters("diagnosis", index, "2D")
    lowered, why = choose_hyperparameters("diagnosis", index, "2D", ["loss_not_finite"])
    halved, _ = choose_hyperparameters("diagnosis", index, "2D", ["out_of_memory"])
    assert lowered["lr"] == 0.0005 and "not finite" in why[-1]
    assert halved["batch_size"] == max(1, int(base["batch_size"]) // 2) and "lr" not in base


def test_the_model_trainer_diagnoses_a_loss_and_a_memory_limit(tmp_path):
    from medbuilder.agents.roles.base import RoleContext
    from medbuilder.agents.roles.model_trainer import TRAIN, diagnose
    from medbuilder.protocol.run_folder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.workspace.mkdir(parents=True)
    ctx = RoleContext(run, None, "request", 1, None)
    (run.workspace / "metrics.json").write_text(json.dumps({"final_train_loss": float("nan")}))
    trajectory = Trajectory(role="model_trainer", attempt=1, core="offline",
                            path=run.root / "trajectories" / "model_trainer-1.json")
    trajectory.add_step("run_script", {"command": TRAIN}, False, "[exit code -9]", 1.0, limit="memory")
    assert diagnose(ctx) == ["loss_not_finite", "out_of_memory"]
    (run.workspace / "metrics.json").write_text(json.dumps({"final_train_loss": 0.3}))
    trajectory.add_step("run_script", {"command": TRAIN}, True, "[exit code 0]", 1.0)
    assert diagnose(ctx) == []


def test_a_refinement_rounds_stage_counts_only_its_own_attempts(tmp_path):
    from medbuilder.protocol.run_folder import RunFolder
    from medbuilder.stages.roles import role_totals

    run = RunFolder(tmp_path / "run")
    for attempt, stage, calls in ((1, "model_trainer", 5), (2, "model_trainer-1", 5), (3, "model_trainer-2", 4)):
        trajectory = Trajectory(role="model_trainer", attempt=attempt, core="offline", stage=stage,
                                path=run.root / "trajectories" / f"model_trainer-{attempt}.json")
        for _ in range(calls):
            trajectory.add_step("read_files", {}, True, "x", 0.1)
    assert [role_totals(run, "model_trainer", s)[0] for s in ("model_trainer", "model_trainer-1", "model_trainer-2")] \
        == [5, 5, 4]
