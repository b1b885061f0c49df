"""From words to an objective, from an objective to strategies, and when it counts as met."""

from __future__ import annotations

import pytest

from medbuilder.protocol.registry import Registry
from medbuilder.protocol.objective import objective_from_text
from medbuilder.review.compare import measures_table, metric_drops, objective_met, objective_text, rounds_table
from medbuilder.review.strategies import plan_strategy, strategies_for
from medbuilder.settings import REPO_ROOT


@pytest.fixture(scope="module")
def cards():
    registry = Registry(REPO_ROOT / "datacards")
    return {name: registry.get(name) for name in ("synth-cxr-drain", "br35h")}


@pytest.mark.parametrize("words", ["detect pneumothorax; the model must not rely on chest drains",
                                   "It should ignore the chest tube.", "don't look at the ICD please"])
def test_negated_mention_of_a_confounder_becomes_an_objective(cards, words):
    objective = objective_from_text(words, cards["synth-cxr-drain"])
    assert objective is not None and objective.confounder == "chest drain"
    assert (objective.measure, objective.max_reliance) == ("counterfactual_flip_rate", 0.25)


@pytest.mark.parametrize("words", ["detect pneumothorax", "the drain should be visible on the image",
                                   "detect pneumothorax and chest drains"])
def test_no_objective_without_a_negation(cards, words):
    assert objective_from_text(words, cards["synth-cxr-drain"]) is None


def test_brain_request_about_text_names_the_region_of_interest(cards):
    objective = objective_from_text("it must look at the brain, not at text on the image", cards["br35h"])
    assert objective.confounder == "burnt-in text and watermarks"
    assert plan_strategy(objective, cards["br35h"], 1) == (
        ["keep only the head region (blank outside it, at training and inference)"], {"roi": "head"})


def test_drain_strategies_use_the_twins_not_inpainting(cards):
    confounder = cards["synth-cxr-drain"].confounders[0]
    keys = [k for _, k in strategies_for(confounder)]
    assert keys == [{"counterfactual_aug": 0.5, "group_balanced": True}]
    objective = objective_from_text("must not rely on drains", cards["synth-cxr-drain"])
    assert plan_strategy(objective, cards["synth-cxr-drain"], 2)[1] == keys[0]


def _summary(k: int, value: float, flip: float | None, status: str) -> dict:
    objective = {"confounder": "chest drain", "measure": "counterfactual_flip_rate", "max_reliance": 0.25,
                 "max_metric_drop": 0.02, "words": "must not rely on drains"}
    return {"round": k, "metric": "auroc", "value": value, "strategies": [] if k == 0 else ["counterfactual_aug"],
            "interpretability": {"measures": {"counterfactual_flip_rate": flip}, "objective": objective,
                                 "objective_status": {"measure": "counterfactual_flip_rate", "value": flip,
                                                      "status": status}}}


def test_objective_met_needs_the_measure_and_the_metric_floor():
    base = _summary(0, 0.80, 0.9, "not met")
    assert objective_met(base, base) is False
    assert objective_met(_summary(1, 0.79, 0.1, "met"), base) is True
    assert objective_met(_summary(1, 0.70, 0.1, "met"), base) is False  # accuracy fell more than 0.02
    assert objective_met(_summary(1, 0.90, None, "not measurable"), base) is None
    table = rounds_table([base, _summary(1, 0.79, 0.1, "met")])
    assert "| 0 | none | 0.800 | - | - | - | - | - | 0.900 |" in table
    assert "| 1 | counterfactual_aug | 0.790 | - | - | - | - | - | 0.100 |" in table


def _with_point(summary: dict, sensitivity: float, specificity: float, missed: int) -> dict:
    return {**summary, "operating_point": {"sensitivity": sensitivity, "specificity": specificity, "missed": missed,
                                           "false_alarms": 3, "threshold": 0.5}}


def test_a_fall_in_sensitivity_fails_the_objective_even_when_auroc_holds():
    base = _with_point(_summary(0, 0.95, 0.9, "not met"), 0.917, 0.90, 25)
    after = _with_point(_summary(1, 0.95, 0.0, "met"), 0.883, 0.91, 35)
    assert objective_met(after, base) is False
    drops = metric_drops(after, base, 0.02)
    assert [d["figure"] for d in drops] == ["sensitivity"] and round(drops[0]["drop"], 3) == 0.034
    assert objective_met(_with_point(_summary(1, 0.95, 0.0, "met"), 0.91, 0.90, 27), base) is True
    assert "| 1 | counterfactual_aug | 0.950 | 0.883 | 0.910 | 35 | 3 |" in rounds_table([base, after])


def test_the_review_text_defines_each_figure_and_says_met_by_construction():
    base = _with_point(_summary(0, 0.95, 0.9, "not met"), 0.917, 0.90, 25)
    after = _with_point(_summary(1, 0.95, 0.0, "met"), 0.883, 0.91, 35)
    info = after["interpretability"]
    text = "\n".join(objective_text(info, metric_drops(after, base, 0.02), "It blanks outside the head."))
    assert "Met by construction" in text and "sensitivity fell from 0.917 to 0.883" in text
    assert "*max reliance*" in text and "*max metric drop*" in text and "Objective: **not met**" in text
    table = "\n".join(measures_table({"measures": {"counterfactual_flip_rate": 0.0}}))
    assert all(word in table for word in ("lower is better", "Near 0 is good", "compare with"))
