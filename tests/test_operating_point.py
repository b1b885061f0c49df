"""The operating point (threshold by target sensitivity or specificity), the review form's typed fields, and the
corrections of how refine feedback is read."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from medbuilder.lifecycle.gate_forms import DatasetDecision, ReviewDecision
from medbuilder.protocol.registry import Registry
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.operating_point import at_threshold, threshold_for
from medbuilder.review.refine import read_feedback, write_refinement
from medbuilder.settings import REPO_ROOT


def _cases(seed: int, n: int = 200):
    rng = random.Random(seed)
    labels = [rng.random() < 0.4 for _ in range(n)]
    scores = [min(1.0, max(0.0, rng.gauss(0.65 if y else 0.35, 0.2))) for y in labels]
    return labels, scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target, value", [("sensitivity", 0.95), ("sensitivity", 0.8), ("specificity", 0.9),
                                           ("specificity", 0.99)])
def test_threshold_reaches_the_target_and_no_higher_threshold_would(seed, target, value):
    labels, scores = _cases(seed)
    threshold = threshold_for(labels, scores, target, value)
    point = at_threshold(labels, scores, threshold)
    assert point[target] >= value
    other = "specificity" if target == "sensitivity" else "sensitivity"
    # the best of the other rate among all thresholds that reach the target
    reaching = [at_threshold(labels, scores, t) for t in sorted(set(scores)) + [1.01]]
    best = max(p[other] for p in reaching if p[target] is not None and p[target] >= value)
    assert point[other] == pytest.approx(best)
    assert point["missed"] + point["tp"] == sum(labels) and point["false_alarms"] + point["tn"] == len(labels) - sum(labels)


def test_bad_targets_are_refused():
    labels, scores = _cases(0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        threshold_for(labels, scores, "sensitivity", 1.5)
    with pytest.raises(ValueError, match="target must be"):
        threshold_for(labels, scores, "accuracy", 0.9)
    with pytest.raises(ValueError, match="no positive case"):
        threshold_for([False, False], [0.1, 0.2], "sensitivity", 0.9)


def test_review_form_fields_are_typed_and_described():
    for model in (ReviewDecision, DatasetDecision):
        schema = model.model_json_schema()
        for name, prop in schema["properties"].items():
            assert prop.get("description") and prop.get("title"), name
            assert "anyOf" not in prop, name  # a plain box in the Prefect UI, not a type toggle
        assert "who" in schema["required"] and "default" not in schema["properties"]["who"]
    assert ReviewDecision.model_json_schema()["properties"]["target"]["enum"] == ["", "sensitivity", "specificity"]
    with pytest.raises(ValidationError, match="go together"):
        ReviewDecision(who="a", target="sensitivity")
    with pytest.raises(ValidationError, match="not both"):
        ReviewDecision(who="a", target="sensitivity", target_value=0.9, threshold=0.3)
    with pytest.raises(ValidationError):
        ReviewDecision(action="approve")  # nobody named


@pytest.fixture()
def br35h_run(tmp_path):
    run = RunFolder(tmp_path / "run")
    card = Registry(REPO_ROOT / "datacards").get("br35h")
    run.write("datacard.json", card.model_dump(mode="json"))
    (run.workspace).mkdir(parents=True, exist_ok=True)
    (run.workspace / "config.json").write_text(json.dumps({"epochs": 8, "image_size": [96, 96]}))
    return run


def test_the_reading_of_feedback_can_be_corrected_before_the_round_trains(br35h_run):
    read = read_feedback(br35h_run, 1, "it must look at the brain, not at text on the image; train longer")
    assert read["objective"]["confounder"] == "burnt-in text and watermarks"
    assert read["config"]["roi"] == "head" and read["config"]["epochs"] == 12
    assert not br35h_run.exists("objective.json")  # a preview writes nothing
    fixed = read_feedback(br35h_run, 1, "train longer", {"confounder": "burnt-in text and watermarks",
                                                         "measure": "attribution_share", "max_reliance": 0.1})
    assert (fixed["objective"]["measure"], fixed["objective"]["max_reliance"]) == ("attribution_share", 0.1)
    with pytest.raises(ValueError, match="names no confounder 'chest drain'"):
        read_feedback(br35h_run, 1, "train longer", {"confounder": "chest drain"})
    with pytest.raises(ValueError, match="does not apply"):
        read_feedback(br35h_run, 1, "not the text", {"strategies": ["counterfactual_aug"]})
    record = write_refinement(br35h_run, 1, "train longer", {"confounder": "burnt-in text and watermarks",
                                                             "measure": "attribution_share"})
    assert br35h_run.read_json("objective.json")["measure"] == "attribution_share"
    assert br35h_run.read_json("refinements/round-1.json") == record and "roi" in record["config"]


def test_rates_at_the_threshold_resample_whole_units():
    """Ten copies of each of 20 scans: the interval over duplicate groups is much wider than Wilson's over
    200 images, which counts every copy as new evidence."""
    from medbuilder.review.operating_point import clustered_rates

    rng = random.Random(0)
    records, labels, scores = [], [], []
    for scan in range(20):
        positive, score = scan % 2 == 0, rng.random()
        for copy in range(10):
            records.append({"image": f"{scan}-{copy}.png", "duplicate_group": f"g{scan}"})
            labels.append(positive)
            scores.append(score)
    clustered = clustered_rates(records, labels, scores, 0.5)
    wilson = at_threshold(labels, scores, 0.5)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert clustered["unit"] == "duplicate group" and clustered["interval"] == "bootstrap over independent duplicate groups"
    assert width(clustered["sensitivity_ci95"]) > 2 * width(wilson["sensitivity_ci95"])
    assert clustered_rates(records[:10], labels[:10], scores[:10], 0.5)["interval"].startswith("Wilson")
