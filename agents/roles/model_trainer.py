"""Model Trainer: choose hyperparameters from the data, train, and read the metric."""

from __future__ import annotations

import json
import math

from medbuilder.agents.core import Actor, RoleJob
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.agents.roles.module_architect import TRAINING_KEYS, template_problems
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.templates import suggest_values
from medbuilder.protocol.templates.spec import TEMPLATES_DIR
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow
from medbuilder.review.clustered import independent_units
from medbuilder.review.verified_metric import fix_test_split, verify

TRAIN = "python train.py --config config.json"


def _context(ctx: RoleContext) -> dict:
    fix_test_split(ctx.run)  # before training: the split the metric is checked on (the flow fixed it at the gate)
    refinement = ctx.run.read_json("refinement.json") if ctx.run.exists("refinement.json") else None
    return {"request": ctx.request, "task": ctx.plan.task, "metric": ctx.plan.metric, "dimension": ctx.card.dimension,
            "workspace": str(ctx.run.workspace), "index_dir": str(ctx.run.index_dir), "train_command": TRAIN,
            "time_limit_s": ctx.settings.train_time_limit_s, "max_epochs": ctx.settings.train_max_epochs,
            "epochs": ctx.settings.train_epochs, "refinement": refinement,
            "feedback": ctx.feedback.text() if ctx.feedback else None}


MIN_GROUPS_FOR_VALIDATION = 1000


def distinct_groups(index: DataIndex) -> int:
    """Training items that are not copies of one another (patients, duplicate groups, else images)."""
    _, units = independent_units([{"patient_id": r.patient_id, "duplicate_group": r.duplicate_group}
                                  for r in index.train])
    return len(set(units.tolist()))


def choose_hyperparameters(task: str, index_dir, dimension: str, feedback: str | None,
                           time_limit_s: float | None, max_epochs: int | None = None,
                           epochs: int | None = None) -> tuple[dict, list[str]]:
    """Training keys from data size, dimension and class balance, adjusted by a failed attempt's feedback."""
    index = DataIndex.read(index_dir, task)
    suggested = suggest_values(task, index, dimension)
    chosen = {k: v for k, v in suggested.items() if k in TRAINING_KEYS}
    reasons = [f"epochs {chosen.get('epochs')} and batch size {chosen.get('batch_size')} for this data size and "
               f"dimension" + (", balanced class weights for the class imbalance" if "class_weights" in chosen else "")]
    groups = distinct_groups(index)
    if groups < MIN_GROUPS_FOR_VALIDATION:
        chosen["val_fraction"] = 0.0
        reasons.append(f"only {groups} distinct training items: train on all of them and keep the last epoch "
                       "rather than hold some out to pick an epoch")
    if time_limit_s:
        chosen["time_limit_s"] = float(time_limit_s)
    if epochs:
        chosen["epochs"] = int(epochs)
        reasons.append(f"epochs set to {epochs} (MEDBUILDER_TRAIN_EPOCHS)")
    if max_epochs and int(chosen.get("epochs", 0)) > max_epochs:
        chosen["epochs"] = int(max_epochs)
        reasons.append(f"epochs capped at {max_epochs} (MEDBUILDER_TRAIN_MAX_EPOCHS)")
    text = (feedback or "").lower()
    if "not finite" in text or "nan" in text:
        chosen["lr"] = 0.0005
        reasons.append("the last loss was not finite: lower learning rate 5e-4")
    if "memory" in text or "killed" in text:
        chosen["batch_size"] = max(1, int(chosen.get("batch_size", 8)) // 2)
        reasons.append("the last run ran out of memory: half the batch size")
    return chosen, reasons


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    shown = act.expect("read_files", "Current configuration.", paths=["config.json"])
    config = json.loads(shown.result[0].text)
    act.expect("preview_files", "How much training data?", path="index/train.json", n=2)
    chosen, reasons = choose_hyperparameters(values["task"], values["index_dir"], values["dimension"],
                                             values["feedback"], values["time_limit_s"], values.get("max_epochs"),
                                             values.get("epochs"))
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


ROLE = Role(
    name="model_trainer",
    tools=["list_files", "read_files", "preview_files", "write_file", "edit_file", "run_script", "copy_files"],
    policy=policy,
    read_roots=lambda ctx: [ctx.dataset_root, TEMPLATES_DIR],
    check=check,
    context=_context,
)
