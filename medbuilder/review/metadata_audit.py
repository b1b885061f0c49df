"""The acquisition-shortcut audit: how well the image files' metadata alone predict the label.

Before any training, a random forest on the acquisition features (acquisition.py) of the training split is
cross-validated with folds grouped by independent unit (patients or duplicate groups: copies of one scan
never sit on both sides of a fold). Its out-of-fold AUROC is the baseline: near 0.5, size, borders, format
and scanner say nothing about the label; high, the data itself carries a shortcut that any model can learn
instead of the anatomy. The audit is written to ``metadata_audit.json`` in the run folder and shown at the
dataset gate and again at the review gate.
"""

from __future__ import annotations

import json

import numpy as np

from medbuilder.protocol.untrusted import read_text_nofollow
from medbuilder.review.acquisition import FEATURES_FILE, feature_matrix, features_of, metadata_forest
from medbuilder.review.clustered import independent_units
from medbuilder.review.metadata_reliance import summary_line as reliance_line
from medbuilder.review.metrics import auroc as auroc_of

AUDIT_FILE = "metadata_audit.json"
WARN_AUROC = 0.7
MAX_FOLDS = 5
MAX_IMAGES = 4000  # above this a seeded sample (the audit is a screen, not the figure a clinician approves)
CLASSIFIER_TASKS = ("diagnosis", "anomaly_detection")


def audit_records(records: list[dict], label_dict: dict, positive: str | None, seed: int = 0,
                  rows_by_image: dict | None = None) -> dict:
    """The metadata baseline on `records` (an index split): out-of-fold AUROC, folds, top features.
    Each image's feature row is also put in `rows_by_image` when given."""
    if len(records) > MAX_IMAGES:
        keep = np.sort(np.random.default_rng(seed).choice(len(records), MAX_IMAGES, replace=False))
        records = [records[i] for i in keep]
    rows = features_of([str(r["image"]) for r in records])
    if rows_by_image is not None:
        rows_by_image.update({str(r["image"]): row for r, row in zip(records, rows)})
    unreadable = [str(r["image"]) for r, row in zip(records, rows) if "error" in row]
    usable = [(r, row) for r, row in zip(records, rows) if "error" not in row]
    base = {"n_images": len(records), "unreadable": len(unreadable), "unreadable_examples": unreadable[:3]}
    if not usable:
        return {**base, "auroc": None, "note": "no image could be read"}
    positive = positive if positive in label_dict else _positive_of(label_dict)
    y = np.array([str(r["label"]) == positive for r, _ in usable])
    unit, units = independent_units([r for r, _ in usable])
    folds = min(MAX_FOLDS, len(set(units[y].tolist())), len(set(units[~y].tolist())))
    x, names = feature_matrix([row for _, row in usable])
    if folds < 2 or x.shape[1] == 0:
        return {**base, "auroc": None, "note": "too few independent units of each class to cross-validate"}
    scores, importance = _out_of_fold(x, y, units, folds, seed)
    auroc = auroc_of(y, scores)  # both classes are present: folds >= 2
    top = _top(importance, names)
    return {**base, "auroc": round(auroc, 4), "positive_label": positive, "folds": folds, "unit": unit,
            "n_units": int(len(set(units.tolist()))), "features": names, "top_features": top,
            "warning": auroc >= WARN_AUROC, "summary": summary_line(auroc, folds, unit, top)}


def _positive_of(label_dict: dict) -> str:
    """The label numbered 1 (the template's positive class of a binary task), else the last."""
    by_number = sorted(label_dict, key=label_dict.get)
    return next((n for n in by_number if label_dict[n] == 1), by_number[-1])


def _out_of_fold(x: np.ndarray, y: np.ndarray, units: np.ndarray, folds: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores, and the feature importances averaged over the fold models (a fold whose
    training part holds one class scores its prevalence and adds none). The folds are fitted on threads
    (scikit-learn builds its trees without the GIL)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from medbuilder.review.per_image import image_map

    def fitted(part: tuple[np.ndarray, np.ndarray]):
        train, test = part
        if len(set(y[train].tolist())) < 2:
            return test, np.full(len(test), y[train].mean()), None
        model = metadata_forest(seed).fit(x[train], y[train])
        return test, model.predict_proba(x[test])[:, 1], model.feature_importances_

    scores, importances = np.zeros(len(y)), []
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with image_map() as each:
        for test, fold_scores, importance in each(fitted, list(splitter.split(x, y, units))):
            scores[test] = fold_scores
            if importance is not None:
                importances.append(importance)
    if not importances:
        importances.append(metadata_forest(seed).fit(x, y).feature_importances_)
    return scores, np.mean(importances, axis=0)


def _top(importance: np.ndarray, names: list[str], k: int = 5) -> list[dict]:
    order = np.argsort(importance)[::-1][:k]
    return [{"feature": names[i], "importance": round(float(importance[i]), 3)} for i in order]


CONTENT_FEATURES = ("mean", "std", "p01", "p99", "file_kib")  # they also follow what the image shows


def summary_line(auroc: float, folds: int, unit: str, top: list[dict]) -> str:
    leading = [t["feature"] for t in top[:3]]
    if auroc < WARN_AUROC:
        verdict = "acquisition properties alone predict the label poorly"
    else:
        verdict = f"{', '.join(leading)} separate the classes without looking at anatomy"
        if all(f in CONTENT_FEATURES for f in leading):
            verdict += (" (intensity statistics and file size also change with a large finding, so part of this "
                        "may be the finding itself)")
        else:
            verdict += ": the data carries an acquisition shortcut"
    return (f"A model that sees only the image files' metadata reaches AUROC {auroc:.3f} ({folds}-fold cross-"
            f"validation on the training split, folds grouped by {unit}): {verdict}.")


def audit_run(run, task: str) -> dict | None:
    """Audit the run's training split and write metadata_audit.json; None for tasks that are not classifiers."""
    if task not in CLASSIFIER_TASKS:
        return None
    records = json.loads(read_text_nofollow(run.index_dir, "train.json"))
    label_dict = json.loads(read_text_nofollow(run.index_dir, "label_dict.json"))
    if task == "anomaly_detection":
        records = records + json.loads(read_text_nofollow(run.index_dir, "test.json"))  # train holds normals only
    rows: dict[str, dict] = {}
    result = {"task": task, "split": "train" if task != "anomaly_detection" else "train and test (normals-only "
              "training split)", **audit_records(records, label_dict, None, rows_by_image=rows)}  # the class numbered 1
    run.write(AUDIT_FILE, result)
    run.write(FEATURES_FILE, rows)
    return result


ACQUISITION_WORDS = ("size", "border", "padding", "aspect", "resolution", "scanner", "manufacturer", "vendor",
                     "site", "institution", "hospital", "station", "file format", "bit depth", "compression")


def acquisition_confounders(card: dict | None) -> list[str]:
    """The datacard's confounders that are acquisition properties (no region, mask, presence or twin column
    to measure them by): this check is how they are measured."""
    named = []
    for c in (card or {}).get("confounders") or []:
        if any(c.get(k) for k in ("roi", "mask_column", "presence_column", "counterfactual_column")):
            continue
        text = " ".join([c.get("name", ""), *c.get("synonyms", []), c.get("how_to_find", "")]).lower()
        if any(word in text for word in ACQUISITION_WORDS):
            named.append(c["name"])
    return named


def audit_lines(run, reliance: dict | None = None) -> list[str]:
    """The audit for a gate's text (empty when there is none); at the review gate, with the model's reliance."""
    if not run.exists(AUDIT_FILE):
        return []
    audit = run.read_json(AUDIT_FILE)
    lines = ["### Acquisition shortcut check", ""]
    if audit.get("auroc") is None:
        return lines + [f"Not measured: {audit.get('note', 'no result')}."]
    top = ", ".join(f"{t['feature']} ({t['importance']:.2f})" for t in audit.get("top_features", [])[:3])
    lines.append(("> **Warning.** " if audit.get("warning") else "") + audit["summary"])
    lines.append(f"Features that carry most of it: {top}. Chance is 0.5; at or above {WARN_AUROC} the data "
                 "carries a shortcut worth fixing (re-pad, resample or crop to one size) before a model learns it.")
    card = run.datacard()
    named = acquisition_confounders(card.model_dump(mode="json") if card else None)
    if named:
        lines.append(f"The datacard names {', '.join(repr(n) for n in named)} as a possible shortcut: this check "
                     "measures it" + (", and the line below the model's use of it." if reliance else "."))
    if reliance and reliance_line(reliance):
        lines.append(reliance_line(reliance))
    if audit.get("unreadable"):
        lines.append(f"{audit['unreadable']} image(s) could not be read for this check.")
    return lines
