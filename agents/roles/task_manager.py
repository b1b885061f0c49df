"""Task Manager: pick the dataset that fits the request (or say none fits) and write the plan.

The clinician's --dataset is their choice and is used unless it cannot serve the task;
what else does not match is written into the plan. A request in a language the offline
core does not read gets a plan that says so and what to do (agents/request_language.py).
"""

from __future__ import annotations

from pydantic import ValidationError

from medbuilder.agents.core import RoleJob
from medbuilder.agents.planning import METRICS
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.agents.scripted import Actor
from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.registry import DatacardError, Registry

PLAN_FILE = "plan.json"


def _context(ctx: RoleContext) -> dict:
    hint = ctx.run.request().dataset
    return {"request": ctx.request, "datacards_dir": str(ctx.settings.datacards_dir), "dataset_hint": hint,
            "plan_file": PLAN_FILE, "feedback": ctx.feedback.text() if ctx.feedback else None,
            "tasks": list(METRICS), "workspace": str(ctx.run.workspace)}


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    ranked = act.expect("rank_datacards", "Which datacard fits the request?", request=values["request"],
                        datacards_dir=values["datacards_dir"], dataset=values["dataset_hint"])
    plan = ranked.result.plan
    act.expect("write_file", "Write the plan.", path=values["plan_file"], content=plan.model_dump_json(indent=1))
    if plan.status == "no_fit":
        return "No dataset fits this request:\n" + "\n".join(plan.reasons)
    return f"Chose {plan.dataset} for {plan.task} ({plan.metric}). " + " ".join(plan.reasons[:2])


def check(ctx: RoleContext) -> list[str]:
    file = ctx.run.workspace / PLAN_FILE
    if not file.exists():
        return [f"write the plan to {PLAN_FILE} in the workspace (a JSON object following the Plan schema)"]
    try:
        plan = Plan.model_validate_json(file.read_text())
    except ValidationError as err:
        return [f"{PLAN_FILE} does not follow the Plan schema: {err}"]
    if plan.status == "no_fit":
        return [] if plan.reasons else ["a 'no_fit' plan must give its reasons"]
    try:
        card = Registry(ctx.settings.datacards_dir).get(plan.dataset or "")
    except (KeyError, DatacardError) as err:
        return [f"plan.dataset: {err}"]
    if plan.task not in [t.value for t in card.tasks]:
        return [f"plan.task '{plan.task}' is not served by {card.name} (it serves {card.tasks_text()})"]
    if not card.has_images:
        return [f"{card.name} has no images; choose a dataset with images or answer no_fit"]
    return []


def publish(ctx: RoleContext) -> None:
    """Copy the checked plan and the chosen datacard to the run folder."""
    plan = Plan.model_validate_json((ctx.run.workspace / PLAN_FILE).read_text())
    ctx.run.write("plan.json", plan)
    if plan.status == "ok":
        ctx.run.choose_dataset(Registry(ctx.settings.datacards_dir).get(plan.dataset), ctx.settings.data_dir)


ROLE = Role(
    name="task_manager",
    tools=["rank_datacards", "list_files", "read_files", "preview_files", "write_file"],
    policy=policy,
    read_roots=lambda ctx: [ctx.settings.datacards_dir],
    check=check,
    context=_context,
    publish=publish,
)
