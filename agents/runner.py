"""Run one attempt of one role: trajectory, tools, core, check, feedback.

A role is a plain function of (run folder, core, feedback) -> artifact. When its
output fails the role's check, the feedback is saved to
``feedback/<role>-<attempt>.json`` and `RoleCheckFailed` is raised: the retry
that follows (a Prefect retry in the flow) starts from that file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel

from medbuilder.agents.core import AgentCore, AgentExit, RoleJob
from medbuilder.agents.roles import ROLES
from medbuilder.agents.roles.base import Role, RoleCheckFailed, RoleContext, RoleGaveUp
from medbuilder.agents.scripted import OfflineCore
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.artifacts import Feedback
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.tools import Workspace
from medbuilder.protocol.tools.sandbox import SandboxConfig
from medbuilder.settings import Settings

log = logging.getLogger(__name__)


class RoleOutcome(BaseModel):
    role: str
    attempt: int
    core: str
    status: str
    actions: int
    tokens: int
    final: str | None = None


def make_core(name: str, settings: Settings) -> AgentCore:
    if name == "offline":
        return OfflineCore(settings.max_steps)
    if name == "llm":
        from medbuilder.agents.llm_core import LlmCore  # langchain-openai only when an LLM is used

        return LlmCore.from_settings(settings)
    raise ValueError(f"unknown agent core '{name}'; use 'offline' or 'llm'")


def next_attempt(run: RunFolder, role: str) -> int:
    return len(list((run.root / "trajectories").glob(f"{role}-*.json"))) + 1


def last_feedback(run: RunFolder, role: str) -> Feedback | None:
    files = sorted((run.root / "feedback").glob(f"{role}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return Feedback.model_validate_json(files[-1].read_text()) if files else None


def _dataset_listing(ctx: RoleContext) -> list:
    """Path, size and mtime of every file of the chosen dataset: a fixed file changes the attempt's inputs."""
    if ctx.card is None or not ctx.dataset_root.is_dir():
        return []
    entries = []
    for folder, dirs, files in os.walk(ctx.dataset_root):
        dirs.sort()
        for name in sorted(files):
            stat = os.lstat(os.path.join(folder, name))
            entries.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
    return entries


def attempt_inputs(role: Role, values: dict, ctx: RoleContext) -> str:
    """Digest of what a deterministic policy decides from; feedback counts only for roles that read it."""
    used = {k: v for k, v in values.items() if k != "feedback" or role.uses_feedback}
    text = json.dumps([used, _dataset_listing(ctx)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _repeats_last_attempt(run: RunFolder, name: str, attempt: int, inputs: str) -> Trajectory | None:
    """The previous attempt, when it failed its check and had exactly these inputs."""
    last = run.root / "trajectories" / f"{name}-{attempt - 1}.json"
    if attempt == 1 or not last.exists() or not run.exists(f"feedback/{name}-{attempt - 1}.json"):
        return None
    previous = Trajectory.load(last)
    return previous if previous.inputs == inputs and previous.status != "exit_no_alternative" else None


def _give_up(run: RunFolder, name: str, attempt: int, trajectory: Trajectory, feedback: Feedback | None) -> None:
    problems = feedback.problems if feedback else []
    trajectory.finish("exit_no_alternative", error=f"attempt {attempt} would repeat attempt {attempt - 1} unchanged "
                      "(same inputs and data): no alternative left")
    raise RoleGaveUp(name, attempt, "exit_no_alternative", problems)


def attempt_history(run: RunFolder, role: str) -> list[str]:
    """How each attempt of `role` ended, in order: its exit status and the first line of its error."""
    files = sorted((run.root / "trajectories").glob(f"{role}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    lines = []
    for file in files:
        trajectory = Trajectory.load(file)
        why = (trajectory.error or "").splitlines()[0][:200] if trajectory.error else ""
        failed = run.exists(f"feedback/{file.stem}.json") or file == files[-1]  # the last: the one being checked
        ending = trajectory.status + (f" ({why})" if why else "")
        if trajectory.status == "submitted":
            ending += ", its check failed" if failed else ", passed its check"
        lines.append(f"attempt {trajectory.attempt}: {ending}")
    return lines


def role_workspace(role: Role, ctx: RoleContext) -> Workspace:
    """The run's workspace as `role` sees it: its read-only roots, the run's limits and sandbox."""
    settings = ctx.settings
    return Workspace.create(ctx.run.workspace, [Path(p) for p in role.read_roots(ctx)],
                            output_chars=settings.tool_output_chars, script_timeout_s=settings.script_timeout_s,
                            sandbox=SandboxConfig.from_settings(settings))


def prestart_scripts(name: str, run: RunFolder, settings: Settings, record: str | None = None, count: int = 1) -> int:
    """Start the Pythons of role `name`'s next `count` scripts now, in its sandbox (they import while other
    work goes on), unless its stage `record` is done already; how many were started. Never fails a build:
    without them the scripts start cold."""
    from medbuilder.protocol.tools import prestart

    try:
        if json.loads((run.root / "stages" / f"{record or name}.json").read_text()).get("status") == "completed":
            return 0
    except (OSError, ValueError):
        pass
    try:
        ctx = RoleContext.load(run, settings, next_attempt(run, name), last_feedback(run, name))
        return prestart.prestart(role_workspace(ROLES[name], ctx), count)
    except (OSError, ValueError) as err:
        log.info("no prestarted Python for %s: %s", name, err)
        return 0


def run_role(name: str, run: RunFolder, settings: Settings, core_name: str | None = None,
             stage: str | None = None) -> RoleOutcome:
    role = ROLES[name]
    core = make_core(core_name or settings.core, settings)
    attempt = next_attempt(run, name)
    ctx = RoleContext.load(run, settings, attempt, last_feedback(run, name))
    values = role.context(ctx)
    inputs = attempt_inputs(role, values, ctx) if core.deterministic else None
    trajectory = Trajectory(role=name, attempt=attempt, core=core.name, inputs=inputs, stage=stage or name,
                            feedback_in=ctx.feedback.text() if ctx.feedback else None,
                            path=run.root / "trajectories" / f"{name}-{attempt}.json")
    if inputs and _repeats_last_attempt(run, name, attempt, inputs):
        _give_up(run, name, attempt, trajectory, ctx.feedback)
    workspace = replace(role_workspace(role, ctx), live_log=run.root / "logs" / f"{name}-{attempt}.log",
                        echo=settings.echo_scripts, dataset=role.dataset(ctx) if role.dataset else None,
                        before_script=role.before_script(ctx))
    job = RoleJob(name, role.system_prompt(values), role.brief(values), role.policy, values)
    try:
        final = core.run(job, Toolbox(workspace, role.tools, trajectory), trajectory)
        trajectory.finish("submitted", final=final)
    except AgentExit as exit_:
        trajectory.finish(exit_.status, error=str(exit_))
    except Exception as err:  # a bug, not a check failure: keep the record, then let it surface
        trajectory.finish("exit_error", error=f"{type(err).__name__}: {err}")
        raise
    role.after(ctx)
    problems = role.check(ctx)
    if trajectory.status != "submitted":
        problems = [f"the agent stopped with {trajectory.status}: {trajectory.error}", *problems]
    if problems:
        feedback = Feedback(role=name, attempt=attempt, problems=problems, kinds=role.diagnose(ctx),
                            attempts=attempt_history(run, name))
        run.write(f"feedback/{name}-{attempt}.json", feedback)
        raise RoleCheckFailed(feedback)
    role.publish(ctx)
    return RoleOutcome(role=name, attempt=attempt, core=core.name, status=trajectory.status,
                       actions=trajectory.actions, tokens=trajectory.tokens.total, final=trajectory.final)
