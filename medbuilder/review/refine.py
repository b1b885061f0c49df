"""A refinement round: the clinician's feedback in plain words becomes configuration changes.

Two kinds of change: an objective about a confounder ("it must not rely on chest
drains") selects shortcut strategies (``strategies.py``); plain training wishes
("train longer", "larger images") adjust hyperparameters. The Model Trainer
retrains with the result (``refinement.json``); each round is evaluated and comes
back to the review gate.
"""

from __future__ import annotations

import json
import re

from medbuilder.protocol.artifacts import Refinement
from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.objective import Objective, default_measure, objective_from_text
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.strategies import plan_strategy, strategies_for

INTENTS = [
    (r"longer|more epochs|train more|underfit", "train 50% more epochs",
     lambda c: {"epochs": max(c.get("epochs", 8) + 1, round(c.get("epochs", 8) * 1.5))}),
    (r"larger images|higher resolution|more detail|finer", "use a larger input size",
     lambda c: {"image_size": [round(s * 4 / 3 / 16) * 16 for s in c["image_size"]]} if c.get("image_size") else {}),
    (r"balance|imbalance|minority|miss(?:es|ing)? (?:the )?positive", "weight classes by inverse frequency",
     lambda c: {"class_weights": "balanced"} if "class_weights" in c else {}),
    (r"overfit|generali[sz]e|too confident", "stronger regularisation: more dropout and weight decay",
     lambda c: {k: v for k, v in (("dropout", min(0.6, c.get("dropout", 0.2) + 0.2)),
                                  ("weight_decay", c.get("weight_decay", 1e-4) * 10)) if k in c}),
]


def plan_refinement(feedback: str, config: dict) -> tuple[dict, list[str]]:
    """Hyperparameter changes for the feedback, and what each is; empty when nothing is recognised."""
    changes, summary = {}, []
    for pattern, text, change in INTENTS:
        if re.search(pattern, feedback, flags=re.IGNORECASE):
            update = change(config)
            if update:
                changes.update(update)
                summary.append(text)
    return changes, summary


def current_objective(run: RunFolder) -> Objective | None:
    return run.objective()


def objective_after(run: RunFolder, card: Datacard, feedback: str, edits: dict) -> Objective | None:
    """The objective after this feedback: stated anew in the words, or the current one; then the clinician's
    corrections of the reading (confounder, measure) and of its numbers."""
    objective = objective_from_text(feedback, card) or current_objective(run)
    named = edits.get("confounder")
    if named:
        confounder = next((c for c in card.confounders if c.name == named), None)
        if confounder is None:
            raise ValueError(f"the datacard {card.name} names no confounder {named!r}; it names: "
                             f"{', '.join(c.name for c in card.confounders) or 'none'}")
        if objective is None or objective.confounder != named:
            measure, limit = default_measure(confounder)
            objective = Objective(confounder=named, measure=measure, max_reliance=limit, words=feedback or named,
                                  **({"max_metric_drop": objective.max_metric_drop} if objective else {}))
    if objective is None:
        return None
    changed = {k: v for k, v in edits.items() if v not in (None, "", []) and k in Objective.model_fields
               and k != "confounder"}
    return objective.model_copy(update=changed)


def chosen_strategies(objective: Objective, card: Datacard, round_k: int, ids: list[str] | None) -> tuple[list[str], dict]:
    """medbuilder's strategies for the round, or the ones the clinician named (by their first key)."""
    if not ids:
        return plan_strategy(objective, card, round_k)
    confounder = next((c for c in card.confounders if c.name == objective.confounder), None)
    available = {next(iter(keys)): (text, keys) for text, keys in strategies_for(confounder)} if confounder else {}
    unknown = [i for i in ids if i not in available]
    if unknown:
        raise ValueError(f"strategy {', '.join(unknown)} does not apply to {objective.confounder}: the datacard "
                         f"allows {', '.join(available) or 'none'}")
    config: dict = {}
    for i in ids:
        config.update(available[i][1])
    return [available[i][0] for i in ids], config


def read_feedback(run: RunFolder, round_k: int, feedback: str, edits: dict | None = None) -> dict:
    """How the feedback is read for round `round_k`, without writing anything: the objective (confounder,
    measure, limits), the strategies, the hyperparameter changes and a one-line summary."""
    card = run.datacard()
    config = json.loads((run.workspace / "config.json").read_text())
    changes, summary = plan_refinement(feedback, config)
    objective = objective_after(run, card, feedback, edits or {})
    strategies: list[str] = []
    if objective:
        strategies, keys = chosen_strategies(objective, card, round_k, (edits or {}).get("strategies"))
        changes.update(keys)
    return {"round": round_k, "feedback": feedback, "objective": objective.model_dump() if objective else None,
            "strategies": strategies, "config": changes,
            "confounders": [c.name for c in card.confounders],
            "summary": "; ".join(summary + strategies) or
                       "no change recognised in the feedback: retrain with the same settings"}


def write_refinement(run: RunFolder, round_k: int, feedback: str, edits: dict | None = None) -> dict:
    record = read_feedback(run, round_k, feedback, edits)
    record.pop("confounders")
    if record["objective"]:
        run.write("objective.json", Objective.model_validate(record["objective"]))
    run.write(f"refinements/round-{round_k}.json", record)
    run.write("refinement.json", Refinement.model_validate(record))
    return record
