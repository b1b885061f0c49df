"""Each stage of the registry (``medbuilder/stages/registry.py``) as a thin Prefect task.

A role's task retries while its check fails: each retry is a debug loop, and it starts from the feedback the
failed attempt saved in the run folder (``feedback/<role>-<attempt>.json``), which `run_role` reads. A stage
that trains holds a slot of the global training limit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from prefect import task

from medbuilder.agents.roles.base import RoleCheckFailed
from medbuilder.progress import TrainingWatch
from medbuilder.stages.registry import STAGES, stage_of
from medbuilder.tasks.slots import training_slot


def _retry_on_check_failure(task, task_run, state) -> bool:
    try:
        state.result()
    except RoleCheckFailed:
        return True
    except Exception:
        return False
    return False


def run_stage_record(run_dir: str, stage: str, core: str | None = None, round_k: int = 0) -> dict:
    """Run the stage that record `stage` (``model_trainer-1``, ``evaluate-0``) belongs to; a stage that trains
    shows the training's progress (terminal bar, Prefect progress artifact) while it runs."""
    spec = stage_of(stage)
    with training_slot(spec.holds_training_slot):  # the stage record's start and end fall inside the held slot
        if not spec.holds_training_slot:
            return spec.run(run_dir, core=core, round_k=round_k, record=stage)
        with TrainingWatch(Path(run_dir) / "workspace", report=_progress_artifact(stage)):
            return spec.run(run_dir, core=core, round_k=round_k, record=stage)


def _progress_artifact(stage: str):
    """report(percent, text) keeping a progress artifact of this task run (None outside a Prefect task); the
    artifact is made at the first report, so a stage that finds its work done leaves none."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.context import TaskRunContext

    if TaskRunContext.get() is None:
        return None
    made: list = []

    def report(percent: float, text: str) -> None:
        if made:
            update_progress_artifact(made[0], percent, description=f"{stage}: {text}")
        else:
            made.append(create_progress_artifact(percent, description=f"{stage}: {text}"))

    return report


@lru_cache(maxsize=None)
def _task(name: str):
    spec = STAGES[name]
    retry = {"retry_condition_fn": _retry_on_check_failure, "retry_delay_seconds": 0} if spec.role else {}
    return task(run_stage_record, name=name, task_run_name="{stage}", persist_result=False, **retry)


def stage_task(name: str, retries: int = 0):
    """The Prefect task of stage `name`; a role's is retried up to `retries` times while its check fails."""
    found = _task(name)
    return found.with_options(retries=retries) if STAGES[name].role else found
