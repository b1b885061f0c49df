"""Refinement strategies per objective: which template keys a round turns on, and why.

Chosen from what the datacard says about the confounder: a region of interest
(keep only what lies inside it), counterfactual twins (plant the confounder on
the other class and remove it from its own, with group-balanced sampling), a
mask (inpaint it away in training images), or presence only (group-balanced
sampling). Round k applies the first k strategies of the list, so each round
adds one when the objective is still not met.
"""

from __future__ import annotations

from medbuilder.protocol.datacard import Confounder, Datacard
from medbuilder.protocol.objective import Objective

Strategy = tuple[str, dict]


def strategies_for(confounder: Confounder) -> list[Strategy]:
    found: list[Strategy] = []
    if confounder.roi:
        found.append((f"keep only the {confounder.roi} region (blank outside it, at training and inference)",
                      {"roi": confounder.roi}))
    if confounder.counterfactual_column:
        found.append(("counterfactual augmentation: swap in each image's twin with the confounder toggled, "
                      "and group-balanced sampling over (label, confounder)",
                      {"counterfactual_aug": 0.5, "group_balanced": True}))
    if confounder.mask_column and not confounder.counterfactual_column:
        # with twins at hand it only hurts: the model never sees the confounder, which test images still show
        # (measured in `medbuilder bench shortcut`: synth-cxr-drain AUROC 0.650 -> 0.515)
        found.append(("inpaint the confounder in training images", {"mask_confounder": True}))
    if confounder.presence_column and not confounder.counterfactual_column:
        found.append(("group-balanced sampling over (label, confounder)", {"group_balanced": True}))
    return found


def plan_strategy(objective: Objective, card: Datacard, round_k: int) -> tuple[list[str], dict]:
    """What round `round_k` (1, 2, ...) does for the objective: descriptions and template keys."""
    confounder = next((c for c in card.confounders if c.name == objective.confounder), None)
    if confounder is None:
        return [], {}
    chosen = strategies_for(confounder)[:max(1, round_k)]
    config: dict = {}
    for _, keys in chosen:
        config.update(keys)
    return [text for text, _ in chosen], config
