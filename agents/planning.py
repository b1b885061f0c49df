"""The Task Manager's plan for a request among the datacards: the card that fits (or why none does), the task,
the metric, the reasons and what each later role must do.

A card the clinician named is their choice: it is used unless it cannot serve the task at all. A request in a
language the offline core does not read gets a plan that says so and what to do (agents/request_language.py).
"""

from __future__ import annotations

from medbuilder.agents.matching import Assessment, assess
from medbuilder.agents.request_language import READ_LANGUAGES, unread_language_reason
from medbuilder.agents.request_terms import RequestTerms
from medbuilder.protocol.artifacts import Plan
from medbuilder.protocol.objective import objective_from_text

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


def draft_plan(request: str, cards: list, hint: str | None) -> Plan:
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
