"""Task Manager: pick the dataset that fits the request (or say none fits) and write the plan.

The clinician's --dataset is their choice and is used unless it cannot serve the task;
what else does not match is written into the plan. A request in a language the offline
core does not read gets a plan that says so and what to do (agents/request_language.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from medbuilder.agents.core import Actor, RoleJob
from medbuilder.agents.matching import Assessment, assess
from medbuilder.agents.request_language import READ_LANGUAGES, unread_language_reason
from medbuilder.agents.request_terms import RequestTerms
from medbuilder.agents.roles.base import Role, RoleContext
from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.objective import objective_from_text
from medbuilder.protocol.registry import DatacardError, Registry, load_card

PLAN_FILE = "plan.json"
METRICS = {"diagnosis": "auroc", "segmentation": "dice", "anomaly_detection": "auroc", "report_generation": "bleu4"}
STEPS = {
    "data_engineer": "Inspect the dataset with the preview tools, write and run make_index.py that writes "
                     "index/train.json, index/test.json and index/label_dict.json (about 80/20, stratified, "
                     "duplicates kept in one split).",
    "module_architect": "Copy the {task} template, fill config.json from the data, check that the dataloader "
                        "yields a batch of the right shape and dtype.",
    "model_trainer": "Choose hyperparameters from the data size, dimension and class balance; train; "
                     "report the test {metric} with its 95% confidence interval.",
}


def _context(ctx: RoleContext) -> dict:
    hint = ctx.run.read_json("request.json").get("dataset")
    return {"request": ctx.request, "datacards_dir": str(ctx.settings.datacards_dir), "dataset_hint": hint,
            "plan_file": PLAN_FILE, "feedback": ctx.feedback.text() if ctx.feedback else None,
            "tasks": list(METRICS), "workspace": str(ctx.run.workspace)}


def _why_none_fits(assessed: list[Assessment]) -> list[str]:
    """One line per card: what stops it."""
    return [f"{a.card.name}: {'; '.join(m.text for m in a.against)}" for a in assessed]


def _no_fit(request: str, candidates: list, reasons: list[str]) -> Plan:
    return Plan(status="no_fit", request=request, candidates=candidates, reasons=reasons)


def _choose(assessed: list[Assessment], hint: str | None) -> Assessment | list[str]:
    """The card to use, or the reasons none can be used.

    A card the clinician named is their choice: it is used unless it cannot serve the task at
    all (wrong task, no images, the other dimension); any other mismatch is only reported.
    """
    if hint:
        named = next((a for a in assessed if a.card.name == hint), None)
        if named is None:
            return [f"the dataset asked for, '{hint}', has no datacard"]
        if named.hard():
            return [f"the dataset asked for, '{hint}', cannot serve", *(f"{hint}: {m.text}" for m in named.hard())]
        return named
    if assessed and assessed[0].fits:
        return assessed[0]
    return ["no dataset fits", *_why_none_fits(assessed)]


def _task_for(terms: RequestTerms, card) -> tuple[str, list[str]]:
    """The task the plan trains, and a reason when it is not the one the request named."""
    served = [t.value for t in card.tasks]
    if terms.task in served:
        return terms.task, []
    return served[0], [f"task: the request names none, so {served[0]}, the first that {card.name} serves"]


def _summary(chosen: Assessment, assessed: list[Assessment]) -> str:
    card = chosen.card
    place = assessed.index(chosen)
    total = len(assessed)
    standing = f"the best of {total} datacards" if place == 0 else f"rank {place + 1} of {total} datacards"
    return f"{card.name} ({card.provenance}, {card.modality}, {card.dimension}, {card.anatomy}) " \
           f"scored {chosen.score:.2f}, {standing}"


def _plan(request: str, cards: list, hint: str | None) -> Plan:
    """The plan for `request` among `cards`; `hint` is the dataset the clinician named, if any."""
    terms = RequestTerms.parse(request)
    assessed = assess(request, cards, terms)
    candidates = [a.candidate() for a in assessed]
    unread = terms.language not in READ_LANGUAGES
    if unread and not terms.task:
        return _no_fit(request, candidates, [unread_language_reason(terms.language), *_why_none_fits(assessed)])
    chosen = _choose(assessed, hint)
    if isinstance(chosen, list):
        return _no_fit(request, candidates, [unread_language_reason(terms.language), *chosen] if unread else chosen)
    card = chosen.card
    task, task_reasons = _task_for(terms, card)
    metric = METRICS[task]
    reasons = [_summary(chosen, assessed), *chosen.supporting, *task_reasons,
               *(f"did not match: {m.text}" for m in chosen.soft() if m.kind != "no_task")]
    if hint:
        reasons.insert(0, f"the clinician asked for {hint}")
    if unread:
        reasons.append(f"the request looks like {terms.language}; the offline core read only the words it knows")
    steps = [f"{role}: {text.format(task=task, metric=metric)}" for role, text in STEPS.items()]
    objective = objective_from_text(terms.english or request, card)
    if objective:
        reasons.append(f"objective from the request: {objective.describe()}")
    return Plan(status="ok", request=request, dataset=card.name, task=task, dimension=card.dimension,
                metric=metric, reasons=reasons, candidates=candidates, steps=steps, objective=objective)


def policy(job: RoleJob, act: Actor) -> str:
    values = job.context
    listing = act.expect("list_files", "Which datacards are there?", path=values["datacards_dir"])
    names = [entry.split("  ")[0] for entry in listing.result.entries]
    files = [n for n in names if n.endswith((".yaml", ".yml", ".json"))]
    paths = [str(Path(values["datacards_dir"]) / name) for name in files]
    cards = []
    for start in range(0, len(paths), 5):
        act.expect("read_files", "Read the datacards.", paths=paths[start:start + 5])
    for path in paths:
        try:
            cards.append(load_card(path))
        except DatacardError:
            continue  # a broken card is not a candidate; `medbuilder datacards validate` reports it
    plan = _plan(values["request"], cards, values["dataset_hint"])
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
        ctx.run.write("datacard.json", Registry(ctx.settings.datacards_dir).get(plan.dataset).model_dump(mode="json"))


ROLE = Role(
    name="task_manager",
    tools=["list_files", "read_files", "preview_files", "write_file"],
    policy=policy,
    read_roots=lambda ctx: [ctx.settings.datacards_dir],
    check=check,
    context=_context,
    publish=publish,
)
