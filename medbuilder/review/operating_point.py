"""The operating point of a binary diagnosis model: the score above which a case is called positive.

The template calls a case positive when its positive-class probability is at least 0.5 (the arg-max of
two classes). A clinician may instead ask for a target sensitivity ("miss at most 1 tumour in 20") or
specificity; ``threshold_for`` finds the threshold that reaches it and ``at_threshold`` gives the counts
there (missed cases, false alarms) with intervals (``summary_block``: bootstrap over independent units;
``at_threshold`` alone: Wilson, per image). Scores and labels come from medbuilder's own
reading of the round: the fixed test split's labels and the predictions' probabilities
(``round_scores``), never the script's metrics.

A threshold chosen on the test split makes the counts at it optimistic (the same cases choose and judge
it); ``chosen_on`` says so wherever the operating point is shown, and the model card repeats it.
"""

from __future__ import annotations

import math

DEFAULT_THRESHOLD = 0.5
TARGETS = ("sensitivity", "specificity")
Z95 = 1.959964


def wilson(successes: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of a proportion (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def at_threshold(labels: list[bool], scores: list[float], threshold: float) -> dict:
    """Counts and rates when a case is called positive at score >= threshold."""
    tp = sum(1 for y, s in zip(labels, scores) if y and s >= threshold)
    fn = sum(1 for y, s in zip(labels, scores) if y and s < threshold)
    fp = sum(1 for y, s in zip(labels, scores) if not y and s >= threshold)
    tn = sum(1 for y, s in zip(labels, scores) if not y and s < threshold)
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "missed": fn, "false_alarms": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else None, "sensitivity_ci95": wilson(tp, tp + fn),
            "specificity": tn / (tn + fp) if tn + fp else None, "specificity_ci95": wilson(tn, tn + fp),
            "ppv": tp / (tp + fp) if tp + fp else None, "npv": tn / (tn + fn) if tn + fn else None}


def threshold_for(labels: list[bool], scores: list[float], target: str, value: float) -> float:
    """The threshold that reaches `value` of `target` while keeping as much of the other as it can.

    sensitivity: the highest threshold whose sensitivity is at least `value`;
    specificity: the lowest threshold whose specificity is at least `value`."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"the target {target} must lie between 0 and 1, not {value}")
    positives = sorted((s for y, s in zip(labels, scores) if y), reverse=True)
    negatives = sorted(s for y, s in zip(labels, scores) if not y)
    if target == "sensitivity":
        if not positives:
            raise ValueError("the test split has no positive case: no threshold reaches a sensitivity")
        needed = max(1, math.ceil(value * len(positives) - 1e-9))
        return float(positives[needed - 1])  # the needed-th highest positive score is still called positive
    if not negatives:
        raise ValueError("the test split has no negative case: no threshold reaches a specificity")
    needed = math.ceil(value * len(negatives) - 1e-9)
    if needed == 0:
        return 0.0
    cut = negatives[needed - 1]  # this negative and all below it must be called negative
    higher = [s for s in scores if s > cut]
    return float(min(higher)) if higher else float(math.nextafter(cut, 2.0))


def curve(labels: list[bool], scores: list[float]) -> list[dict]:
    """The counts at every distinct score (what a slider over thresholds shows), plus 0.5."""
    thresholds = sorted({float(s) for s in scores} | {DEFAULT_THRESHOLD})
    return [at_threshold(labels, scores, t) for t in thresholds]


def round_scores(run, round_k: int) -> tuple[list[bool], list[float], str | None]:
    """(label is positive, positive-class probability, positive class) of round k on the fixed test split;
    empty for a model that is not binary. Labels are the fixed split's, scores the round's predictions
    (read as data, no link followed)."""
    labels, scores, positive, _ = scored_records(run, round_k)
    return labels, scores, positive


def scored_records(run, round_k: int) -> tuple[list[bool], list[float], str | None, list[dict]]:
    """round_scores and the fixed split's records they belong to."""
    from medbuilder.review.verified_metric import fixed_test_split, read_predictions

    records, label_dict = fixed_test_split(run)
    predictions, cfg = read_predictions(run.round_dir(round_k))
    if len(label_dict) != 2:
        return [], [], None, []
    positive = cfg.get("positive_label")
    if positive not in label_dict:  # the template's default: the class with index 1
        positive = next((n for n, i in label_dict.items() if i == 1), None)
    by_image = {str(p.get("image")): p for p in predictions}
    labels, scores, kept = [], [], []
    for r in records:
        p = by_image.get(str(r["image"]))
        value = ((p or {}).get("probabilities") or {}).get(positive)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            labels.append(str(r["label"]) == positive)
            scores.append(float(value))
            kept.append(r)
    return labels, scores, positive, kept


def clustered_rates(records: list[dict], labels: list[bool], scores: list[float], threshold: float,
                    n_boot: int = 1000) -> dict:
    """Sensitivity and specificity intervals at `threshold`, resampling whole independent units."""
    import numpy as np

    from medbuilder.review.clustered import cluster_bootstrap, independent_units

    unit, units = independent_units(records)
    y, called = np.array(labels, dtype=bool), np.array(scores) >= threshold

    def rates(idx):
        pos, neg = y[idx], ~y[idx]
        return {"sensitivity": float(called[idx][pos].mean()) if pos.any() else None,
                "specificity": float((~called[idx][neg]).mean()) if neg.any() else None}

    found = cluster_bootstrap(rates, units, n_boot)
    if not found:
        return {"interval": "Wilson, per image (too few independent units to resample)"}
    return {"sensitivity_ci95": found.get("sensitivity"), "specificity_ci95": found.get("specificity"),
            "interval": f"bootstrap over independent {unit}s", "unit": unit}


def summary_block(run, round_k: int, threshold: float = DEFAULT_THRESHOLD, target: str | None = None,
                  target_value: float | None = None) -> dict | None:
    """The operating point shown at review and stored at approval: threshold, how it was chosen, counts."""
    labels, scores, positive, records = scored_records(run, round_k)
    if not labels:
        return None
    if target is not None and target_value is not None:
        threshold = threshold_for(labels, scores, target, target_value)
        how = f"target {target} {target_value:.2f}"
    else:
        how = "default (probability 0.5)" if threshold == DEFAULT_THRESHOLD else "set by the clinician"
    point = at_threshold(labels, scores, threshold)
    clustered = clustered_rates(records, labels, scores, threshold)
    return {"positive_label": positive, "how": how, "target": target, "target_value": target_value,
            "chosen_on": "test" if how != "default (probability 0.5)" else None,
            **point, **{k: v for k, v in clustered.items() if v is not None}}
