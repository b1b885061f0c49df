"""Whole builds on the LLM core, against the second endpoint (tests/wire_endpoint.py) and its models.

`medbuilder build ... --core llm --approve auto` runs as a user runs it, in its own process, on 20
real Br35H images and the test Prefect server. The competent model plays all four roles the way a
small model does (parallel calls, only the data keys in config.json, a paged read, usage only on a
role's last reply); the build must deliver with its interpretability report, and the records must
say what happened (the fill medbuilder made, tool names on tool messages, token counts marked as
estimates). The broken model fails the Task Manager three ways; the build must end `failed`, name
every attempt's ending, and show no traceback on the console.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from flow_helpers import MEDBUILDER
from llm_models import Broken, competent
from wire_endpoint import WireEndpoint

from medbuilder.agents.trajectory import Trajectory

pytestmark = pytest.mark.slow

REQUEST = "Classify brain MRI slices as tumour or no tumour"


def _env(base: Path, api: str, endpoint: WireEndpoint, **extra: str) -> dict:
    env = {"PREFECT_API_URL": api, "MEDBUILDER_DATA_DIR": str(base / "data"), "MEDBUILDER_RUNS_DIR": str(base / "runs"),
           "MEDBUILDER_LLM_BASE_URL": endpoint.url, "MEDBUILDER_LLM_MODEL": endpoint.name, "MEDBUILDER_LLM_API_KEY": "x",
           "MEDBUILDER_LLM_TIMEOUT_S": "60", "MEDBUILDER_LLM_RETRIES": "0", "MEDBUILDER_TRAIN_TIME_LIMIT_S": "8",
           "MEDBUILDER_TRAIN_EPOCHS": "2", "MEDBUILDER_ECHO_SCRIPTS": "false"}
    return {**os.environ, **env, **extra}


def _build(env: dict, timeout: int) -> tuple[subprocess.CompletedProcess, Path]:
    done = subprocess.run([MEDBUILDER, "build", REQUEST, "--core", "llm", "--approve", "auto"], env=env,
                          capture_output=True, text=True, timeout=timeout)
    [run_dir] = [p for p in Path(env["MEDBUILDER_RUNS_DIR"]).iterdir() if (p / "run.json").exists()]
    return done, run_dir


def _tool_names_answer_their_calls(bodies: list[dict]) -> None:
    """Every tool message carries the name of the tool its call asked for."""
    checked = 0
    for body in bodies:
        asked = {c["id"]: c["function"]["name"] for m in body["messages"] if m["role"] == "assistant"
                 for c in m.get("tool_calls") or []}
        for message in body["messages"]:
            if message["role"] == "tool":
                assert message.get("name") == asked[message["tool_call_id"]], message
                checked += 1
    assert checked > 0


def test_competent_model_delivers_with_its_interpretability_report(prefect_api, br35h_small):
    with WireEndpoint(competent) as endpoint:
        done, run_dir = _build(_env(br35h_small, prefect_api, endpoint), timeout=600)
    console = done.stdout + done.stderr
    assert done.returncode == 0 and not endpoint.errors, (endpoint.errors, console[-4000:])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "delivered"

    summary = json.loads((run_dir / "report/round-0/summary.json").read_text())
    assert summary["interpretability"]["measures"] and (run_dir / "report/round-0/interpretability.md").exists()

    fill = json.loads((run_dir / "template_fill.json").read_text())  # medbuilder's record, outside the workspace
    assert fill["filled_by"] == "model_trainer"
    sources = fill["sources"]  # who chose each key: the template's default, or the role that wrote it
    assert {sources[k] for k in ("model", "channels", "roi_crop")} == {"default"}
    assert sources["image_size"] == "module_architect" and sources["epochs"] == "model_trainer"
    config = json.loads((run_dir / "rounds/0/config.json").read_text())
    assert config["model"] == "cnn" and config["image_size"] == [64, 64] and config["epochs"] == 2
    metadata = json.loads((run_dir / "bundle/configs/metadata.json").read_text())
    files = metadata["medbuilder"]["template"]["files"]
    assert files and not any(f["edited_after_fill"] for f in files.values())

    _tool_names_answer_their_calls(endpoint.bodies)
    assert any(c["function"]["name"] == "read_files" and "offset" in c["function"]["arguments"]
               for body in endpoint.bodies for m in body["messages"] if m["role"] == "assistant"
               for c in m.get("tool_calls") or [])  # the cut datacard page was read on
    for file in sorted((run_dir / "trajectories").glob("*.json")):
        trajectory = Trajectory.load(file)
        replies = sum(1 for m in trajectory.messages if m["role"] == "assistant")
        assert trajectory.status == "submitted" and trajectory.attempt == 1, file.name
        assert trajectory.tokens.estimated_replies == replies - 1, file.name  # usage came only with the last
        assert trajectory.tokens.prompt > 0 and trajectory.tokens.completion > 0


def test_broken_model_ends_failed_naming_every_attempt(prefect_api, br35h_small):
    with WireEndpoint(Broken()) as endpoint:
        env = _env(br35h_small, prefect_api, endpoint, MEDBUILDER_MAX_DEBUG_LOOPS="2", MEDBUILDER_MAX_STEPS="30")
        done, run_dir = _build(env, timeout=300)
    assert done.returncode == 1 and not endpoint.errors, (endpoint.errors, done.stderr[-3000:])
    assert "Traceback" not in done.stdout + done.stderr

    record = json.loads((run_dir / "run.json").read_text())
    failure = json.loads((run_dir / "failure.json").read_text())
    assert record["status"] == "failed" and failure["role"] == "task_manager" and failure["attempts"] == 3
    history = failure["history"]
    assert [line.split(":")[0] for line in history] == ["attempt 1", "attempt 2", "attempt 3"]
    assert history[0].startswith("attempt 1: exit_step_limit") and history[1].startswith("attempt 2: exit_format")
    assert history[2] == "attempt 3: submitted, its check failed"
    assert all(line in done.stderr for line in history)

    first, second = (Trajectory.load(run_dir / f"trajectories/task_manager-{n}.json") for n in (1, 2))
    assert first.actions == 30 and first.refused_calls == 6  # 12 + 12 + 6 run, 6 refused, then the limit
    assert (second.tokens.prompt, second.tokens.completion) == (9000, 75)  # three unreadable replies, counted

    listed = subprocess.run([MEDBUILDER, "runs"], env=env, capture_output=True, text=True, timeout=60)
    lines = listed.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if run_dir.name in line)
    assert "failed" in lines[row] and "interrupted" not in lines[row]
    assert lines[row + 1].split()[:2] == ["task_manager:", "its"]  # the role and the reason, under the run
    assert (record["failed_role"], record["failure_reason"].split(";")[0]) == ("task_manager",
                                                                            "its check failed on every attempt")
