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

from medbuilder.protocol.artifacts import RunFolder
from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.objective import Objective, objective_from_text
from medbuilder.review.strategies import plan_strategy

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
    return run.read("objective.json", Objective) if run.exists("objective.json") else None


def update_objective(run: RunFolder, card: Datacard, feedback: str, edits: dict) -> Objective | None:
    """The objective after this feedback: stated anew in the words, or the current one; numbers edited."""
    objective = objective_from_text(feedback, card) or current_objective(run)
    if objective is None:
        return None
    changed = {k: v for k, v in edits.items() if v is not None and k in Objective.model_fields}
    objective = objective.model_copy(update=changed)
    run.write("objective.json", objective)
    return objective


def write_refinement(run: RunFolder, round_k: int, feedback: str, edits: dict | None = None) -> dict:
    card = Datacard.model_validate(run.read_json("datacard.json"))
    config = json.loads((run.workspace / "config.json").read_text())
    changes, summary = plan_refinement(feedback, config)
    objective = update_objective(run, card, feedback, edits or {})
    if objective:
        strategies, keys = plan_strategy(objective, card, round_k)
        changes.update(keys)
        summary += strategies
    record = {"round": round_k, "feedback": feedback, "objective": objective.model_dump() if objective else None,
              "config": changes,
              "summary": "; ".join(summary) or "no change recognised in the feedback: retrain with the same settings"}
    run.write(f"refinements/round-{round_k}.json", record)
    run.write("refinement.json", record)
    return record
