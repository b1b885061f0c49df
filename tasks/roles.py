"""Each role as a thin Prefect task: its retries are the role's debug loops.

A retry starts from the feedback the failed attempt saved in the run folder
(``feedback/<role>-<attempt>.json``), which `run_role` reads.
"""

from __future__ import annotations

from prefect import task

from medbuilder.agents.roles.base import RoleCheckFailed
from medbuilder.agents.runner import run_role
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.artifacts import RunFolder
from medbuilder.settings import get_settings
from medbuilder.stack.pool import training_slot
from medbuilder.tasks.stages import run_stage


def role_totals(run: RunFolder, role: str) -> tuple[int, int]:
    """Actions and tokens over every attempt of `role` in this run."""
    trajectories = [Trajectory.load(f) for f in (run.root / "trajectories").glob(f"{role}-*.json")]
    return sum(t.actions for t in trajectories), sum(t.tokens.total for t in trajectories)


def role_stage(run_dir: str, role: str, core: str, stage: str | None = None) -> dict:
    """Run `role` as stage `stage` (default: the role's name) unless that stage completed."""
    run = RunFolder(run_dir)

    def work() -> dict:
        return run_role(role, run, get_settings(), core).model_dump()

    with training_slot(role):  # the stage record's start and end fall inside the held slot
        return run_stage(run, stage or role, work, totals=lambda: role_totals(run, role))


def _retry_on_check_failure(task, task_run, state) -> bool:
    try:
        state.result()
    except RoleCheckFailed:
        return True
    except Exception:
        return False
    return False


@task(name="role", task_run_name="{stage}", retry_condition_fn=_retry_on_check_failure, retry_delay_seconds=0,
      persist_result=False)
def role_task(run_dir: str, role: str, core: str, stage: str) -> dict:
    """One attempt of `role`; Prefect retries it (a debug loop) when its check fails."""
    return role_stage(run_dir, role, core, stage)
