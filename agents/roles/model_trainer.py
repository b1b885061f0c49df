"""Model Trainer: choose hyperparameters from the data, train, and read the metric."""

from __future__ import annotations

import json
import math

from medbuilder.agents.core import RoleJob
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.agents.roles.module_architect import template_problems
from medbuilder.agents.roles.preprocessing import before_script, store_roots
from medbuilder.agents.scripted import Actor
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.templates.spec import TEMPLATES_DIR
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow
from medbuilder.review.verified_metric import fix_test_split, verify

ROLE_NAME = "model_trainer"
TRAIN = "python train.py --config config.json"


def _context(ctx: RoleContext) -> dict:
    fix_test_split(ctx.run)  # before training: the split the metric is checked on (the flow fixed it at the gate)
    refinement = ctx.run.refinement()
    return {"request": ctx.request, "task": ctx.plan.task, "metric": ctx.plan.metric, "dimension": ctx.card.dimension,
            "workspace": str(ctx.run.workspace), "index_dir": str(ctx.run.index_dir), "train_command": TRAIN,
            "time_limit_s": ctx.settings.train_time_limit_s, "max_epochs": ctx.settings.train_max_epochs,
            "epochs": ctx.settings.train_epochs,
            "refinement": refinement.model_dump(mode="json") if refinement else None,
            "feedback": ctx.feedback.text() if ctx.feedback else None,
            "adjust": list(ctx.feedback.kinds) if ctx.feedback else []}


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    shown = act.expect("read_files", "Current configuration.", paths=["config.json"])
    config = json.loads(shown.result[0].text)
    adjust = values.get("adjust") or []
    choice = act.expect("choose_training", "Training keys for this data.", task=values["task"],
                        dimension=values["dimension"], lower_lr="loss_not_finite" in adjust,
                        halve_batch="out_of_memory" in adjust, time_limit_s=values["time_limit_s"],
                        max_epochs=values.get("max_epochs"), epochs=values.get("epochs")).result
    chosen, reasons = dict(choice.values), list(choice.reasons)
    if values["refinement"]:
        chosen.update(values["refinement"].get("config", {}))
        reasons.append(f"refinement round {values['refinement']['round']}: {values['refinement']['summary']}")
    config.update(chosen)
    act.expect("write_file", "Set hyperparameters: " + "; ".join(reasons), path="config.json",
               content=json.dumps(config, indent=1) + "\n")
    run = act("run_script", "Train.", command=values["train_command"])
    if not run.ok:
        return f"Training failed:\n{run.text[-2000:]}"
    metrics = json.loads(act.expect("read_files", "Read the metric.", paths=["metrics.json"]).result[0].text)
    return f"Trained: test {metrics['metric']} = {metrics['value']:.4f} (95% CI {metrics.get('ci95')}); " + \
        "; ".join(reasons)


def check(ctx: RoleContext) -> list[str]:
    try:
        metrics = json.loads(read_text_nofollow(ctx.run.workspace, "metrics.json"))
    except FileNotFoundError:
        return [f"training wrote no metrics.json; run `{TRAIN}` in the workspace and read its output"]
    except (UntrustedFileError, ValueError) as err:
        return [f"metrics.json cannot be read ({err}); run `{TRAIN}` again, it writes a plain JSON file"]
    if not isinstance(metrics, dict):
        return [f"metrics.json is not a JSON object; run `{TRAIN}` again"]
    problems = template_problems(ctx, "model_trainer")
    loss = metrics.get("final_train_loss")
    if loss is None or not math.isfinite(loss):
        problems.append(f"the final training loss is not finite ({loss}): lower the learning rate")
    value = metrics.get("value")
    if metrics.get("metric") != ctx.plan.metric or value is None or not 0 <= value <= 1:
        problems.append(f"metrics.json must report the plan's metric {ctx.plan.metric} in [0, 1]; "
                        f"it has {metrics.get('metric')} = {value}")
    if not (ctx.run.workspace / "checkpoints" / "model.pt").exists():
        problems.append("no checkpoints/model.pt was written")
    checked = verify(ctx.run, ctx.run.workspace, ctx.plan.task, metrics)
    ctx.run.write("metric_check.json", checked)
    return problems + checked["problems"]


def diagnose(ctx: RoleContext) -> list[str]:
    """Why training failed, typed, for the next attempt: a loss that was not finite, a training the sandbox
    stopped at its memory limit."""
    kinds = []
    try:
        metrics = json.loads(read_text_nofollow(ctx.run.workspace, "metrics.json"))
    except (OSError, UntrustedFileError, ValueError):
        metrics = {}
    loss = metrics.get("final_train_loss") if isinstance(metrics, dict) else None
    if isinstance(loss, (int, float)) and not math.isfinite(loss):
        kinds.append("loss_not_finite")
    try:
        steps = Trajectory.load(ctx.run.root / "trajectories" / f"model_trainer-{ctx.attempt}.json").steps
    except (OSError, ValueError):
        steps = []
    trainings = [s for s in steps if s.tool == "run_script" and s.args.get("command") == TRAIN]
    if trainings and trainings[-1].limit == "memory":
        kinds.append("out_of_memory")
    return kinds


ROLE = Role(
    name=ROLE_NAME,
    tools=["choose_training", "list_files", "read_files", "preview_files", "write_file", "edit_file", "run_script",
           "copy_files"],
    policy=policy,
    read_roots=lambda ctx: [ctx.dataset_root, TEMPLATES_DIR, *store_roots(ctx)],
    check=check,
    context=_context,
    diagnose=diagnose,
    before_script=before_script(ROLE_NAME),
)
