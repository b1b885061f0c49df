"""The shortcut case through the whole flow: a clinician's objective, measured at the review gate,
refined on feedback, and reported in the delivered model's card.

Data: the GENERATED synth-cxr-drain set (a drain-like line agrees with the label in 90% of
training images, 50% of test images), a small subset; real Prefect server, real training.
"""

from __future__ import annotations

import json

import pytest

from flow_helpers import approve, flow_env, kill_tree, pending_gate_is, start, wait_for, wait_for_run

REQUEST = "detect pneumothorax; the model must not rely on chest drains"
pytestmark = pytest.mark.slow


@pytest.fixture()
def drain_small(data_env):
    from medbuilder.protocol.datasets import prepare

    prepare("synth-cxr-drain", data_env / "data" / "synth-cxr-drain", limit=20, echo=lambda *_: None)
    return data_env


def test_objective_measured_refined_and_reported(prefect_api, drain_small):
    env = {**flow_env(drain_small, prefect_api), "MEDBUILDER_TRAIN_TIME_LIMIT_S": "20"}
    log = drain_small / "build.log"
    proc = start(["build", REQUEST, "--approve", "prefect"], env, log)
    try:
        run_dir = wait_for_run(drain_small / "runs", log)
        wait_for(lambda: pending_gate_is(run_dir, "dataset-1"), 180, "the dataset gate", log)
        assert json.loads((run_dir / "plan.json").read_text())["dataset"] == "synth-cxr-drain"
        assert approve(run_dir.name, env).returncode == 0

        wait_for(lambda: pending_gate_is(run_dir, "review-0"), 600, "the first review gate", log)
        first = (run_dir / "gates" / "review-0.md").read_text()
        assert "How much the model relies on the confounder" in first and "chest drain" in first
        assert "missed" in first and "false alarms" in first and "Calibration error" in first
        assert "`" not in first and str(run_dir) not in first  # no paths, no answer syntax in code font
        objective = json.loads((run_dir / "objective.json").read_text())
        assert (objective["confounder"], objective["measure"]) == ("chest drain", "counterfactual_flip_rate")
        summary = json.loads((run_dir / "report" / "round-0" / "summary.json").read_text())
        flip = summary["interpretability"]["measures"]["counterfactual_flip_rate"]
        assert flip is None or (0.0 <= flip <= 1.0 and f"| flip rate | {flip:.3f} |" in first)
        assert (run_dir / "report" / "round-0" / "interpretability.md").exists()

        answered = approve(run_dir.name, env, "--action", "refine", "--feedback",
                            "it still looks at the drain tube; train longer", "--max-reliance", "0.2", "--who", "dr-c")
        assert answered.returncode == 0, answered.stderr
        wait_for(lambda: pending_gate_is(run_dir, "review-1"), 600, "the second review gate", log)
        second = (run_dir / "gates" / "review-1.md").read_text()
        assert "Before and after" in second and "counterfactual_aug" in second
        refinement = json.loads((run_dir / "refinements" / "round-1.json").read_text())
        assert refinement["config"]["counterfactual_aug"] > 0 and refinement["config"]["group_balanced"] is True
        assert refinement["objective"]["max_reliance"] == 0.2
        assert json.loads((run_dir / "rounds" / "1" / "config.json").read_text())["counterfactual_aug"] > 0

        assert approve(run_dir.name, env, "--who", "dr-c").returncode == 0
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    card = (run_dir / "model_card.md").read_text()
    assert "Interpretability and shortcut measures" in card and "Measured on round 1" in card
    assert "flip rate" in card and "| 0 | none |" in card
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "delivered"
    assert {"interpretability-round-0", "interpretability-round-0-measures",
            "interpretability-round-1"} <= _artifact_keys(prefect_api, record["flow_run_id"])


def _artifact_keys(api: str, flow_run_id: str) -> set[str]:
    """Keys of the Prefect artifacts the run published (the interpretability reports)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        # the sync client sends every field, so each needs a value
        found = client.read_artifacts(artifact_filter=ArtifactFilter(), task_run_filter=TaskRunFilter(),
                                      flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
                                      sort=ArtifactSort.CREATED_DESC, limit=100, offset=0)
    return {a.key for a in found if a.key}
