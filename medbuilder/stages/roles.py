"""The four agent roles as stages: one attempt of the role per call, its totals in the stage record."""

from __future__ import annotations

from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import get_settings
from medbuilder.stages.record import run_stage


def role_totals(run: RunFolder, role: str, stage: str) -> tuple[int, int]:
    """Actions and tokens over the attempts of `role` that stage `stage` made (a refinement round's stage counts
    its own attempts, not the earlier rounds')."""
    trajectories = [Trajectory.load(f) for f in (run.root / "trajectories").glob(f"{role}-*.json")]
    mine = [t for t in trajectories if (t.stage or role) == stage]
    return sum(t.actions for t in mine), sum(t.tokens.total for t in mine)


def role_stage(run_dir: str, role: str, core: str, stage: str | None = None) -> dict:
    """Run `role` as stage `stage` (default: the role's name) unless that stage completed."""
    run = RunFolder(run_dir)

    def work() -> dict:
        from medbuilder.agents.runner import run_role  # the agents' imports only when a role runs

        return run_role(role, run, get_settings(), core, stage or role).model_dump()

    return run_stage(run, stage or role, work, totals=lambda: role_totals(run, role, stage or role))
