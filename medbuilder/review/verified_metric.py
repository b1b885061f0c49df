"""The figure a clinician approves, computed by medbuilder on the host.

The test split is fixed, and hashed, when the clinician approves the dataset (``fix_test_split``):
``runs/<id>/fixed_split/`` holds copies of the index's test.json and label_dict.json, read without
following links. A training script in the sandbox writes predictions.json; medbuilder reads it as
data, checks that it covers exactly the fixed test images, and computes the metric and its bootstrap
interval over independent units (patients or duplicate groups, see clustered.py) with medbuilder's own
template functions (the same definitions training uses), taking the labels and reference reports from
the fixed split, never from the script. A metrics.json whose figure differs fails the Model Trainer's
check; the round's metrics.json shows medbuilder's figure.
"""

from __future__ import annotations

import hashlib
import json
import math
import runpy
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow, read_text_nofollow
from medbuilder.review.clustered import cluster_bootstrap, describe, independent_units, one_per_unit
from medbuilder.review.trusted_code import IMPORTING, TRUSTED_CODE, write_template_code

FIXED = "fixed_split"
FIXED_FILES = ("test.json", "label_dict.json")
TOLERANCE = 5e-4  # metrics.json rounds to 4 decimals
SIBLINGS = ("common", "engine", "confounders", "dataloader", "model", "text", "predict", "train")
MAX_BOOT = 10000
Statistic = Callable[[np.ndarray], dict]


def fix_test_split(run: RunFolder) -> dict:
    """Copy and hash the approved index's test split once; later calls return the manifest as it was."""
    if run.exists(f"{FIXED}/manifest.json"):
        return run.read_json(f"{FIXED}/manifest.json")
    folder = run.root / FIXED
    digests = {}
    for name in FIXED_FILES:
        if (run.index_dir / name).exists() or (run.index_dir / name).is_symlink():
            target = copy_nofollow(run.index_dir, name, folder / name)
            digests[name] = hashlib.sha256(target.read_bytes()).hexdigest()
    records = json.loads((folder / "test.json").read_text()) if "test.json" in digests else []
    manifest = {"sha256": digests, "n_test": len(records), "fixed": datetime.now(timezone.utc).isoformat()}
    run.write(f"{FIXED}/manifest.json", manifest)
    return manifest


def fixed_test_split(run: RunFolder) -> tuple[list[dict], dict]:
    """(test records, label_dict) of the fixed split; ValueError when it was not fixed or was changed."""
    if not run.exists(f"{FIXED}/manifest.json"):
        raise ValueError("the test split was not fixed when the dataset was approved; approve the dataset gate again")
    manifest = run.read_json(f"{FIXED}/manifest.json")
    for name, digest in manifest["sha256"].items():
        if hashlib.sha256(run.path(f"{FIXED}/{name}").read_bytes()).hexdigest() != digest:
            raise ValueError(f"{run.path(f'{FIXED}/{name}')} changed after it was fixed (sha256 differs)")
    labels = run.read_json(f"{FIXED}/label_dict.json") if "label_dict.json" in manifest["sha256"] else {}
    return run.read_json(f"{FIXED}/test.json"), labels


def template_namespace(run: RunFolder, task: str, script: str) -> dict:
    """A module of medbuilder's own template for `task` (staged in the run folder), for its metric functions."""
    code = write_template_code(task, run.root / TRUSTED_CODE / f"metrics-{task}")
    with IMPORTING:  # sys.modules and sys.path are the process's: one template's siblings at a time
        for name in SIBLINGS:
            module = sys.modules.get(name)
            if module is not None and Path(getattr(module, "__file__", "") or "").resolve().parent != code:
                sys.modules.pop(name, None)
        sys.path.insert(0, str(code))
        try:
            return runpy.run_path(str(code / script), run_name=f"medbuilder_metrics_{Path(script).stem}")
        finally:
            sys.path.remove(str(code))


def read_predictions(source: Path) -> tuple[list[dict], dict]:
    """(predictions, config) from a workspace or a round snapshot, read as data without following links."""
    cfg = json.loads(read_text_nofollow(source, "config.json"))
    out = str(cfg.get("output_dir") or ".").strip("/") or "."
    for rel in (f"{out}/predictions.json" if out != "." else "predictions.json", "predictions.json"):
        try:
            predictions = json.loads(read_text_nofollow(source, rel))
        except FileNotFoundError:
            continue
        if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
            raise ValueError(f"{source / rel} is not a list of predictions")
        return predictions, cfg
    raise FileNotFoundError(f"no predictions.json in {source}: training writes it next to metrics.json")


def _coverage(records: list[dict], predictions: list[dict]) -> tuple[list[dict], list[str]]:
    """Predictions in the fixed split's order, and what does not match it."""
    by_image: dict[str, dict] = {}
    doubled = set()
    for p in predictions:
        image = str(p.get("image"))
        doubled.update({image} if image in by_image else set())
        by_image[image] = p
    wanted = [str(r["image"]) for r in records]
    missing = [i for i in wanted if i not in by_image]
    extra = sorted(set(by_image) - set(wanted))
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the {len(wanted)} fixed test images have no prediction "
                        f"(e.g. {missing[0]}): predict every image of the test split fixed at the dataset gate")
    if extra:
        problems.append(f"{len(extra)} predictions are for images outside the fixed test split (e.g. {extra[0]}): "
                        "the test split is the one fixed at the dataset gate; do not change index/test.json")
    if doubled:
        problems.append(f"{len(doubled)} test images are predicted twice (e.g. {sorted(doubled)[0]})")
    return [by_image[i] for i in wanted if i in by_image], problems


def _boot(cfg: dict) -> tuple[int, int]:
    n_boot, seed = cfg.get("bootstrap", 1000), cfg.get("seed", 0)
    n_boot = int(n_boot) if isinstance(n_boot, (int, float)) and 0 <= n_boot <= MAX_BOOT else 1000
    return n_boot, int(seed) if isinstance(seed, int) else 0


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number ({value!r})")
    return float(value)


def _diagnosis(run, records, label_dict, predictions, cfg) -> tuple[dict, Statistic]:
    ns = template_namespace(run, "diagnosis", "train.py")
    names = [n for n, _ in sorted(label_dict.items(), key=lambda kv: kv[1])]
    probs = np.array([[_number((p.get("probabilities") or {}).get(n), f"the probability of '{n}' for {p.get('image')}")
                       for n in names] for p in predictions])
    labels = np.array([label_dict[str(r["label"])] for r in records])
    positive = None
    if len(names) == 2:
        positive = label_dict[cfg["positive_label"]] if cfg.get("positive_label") in label_dict else 1

    def figures(idx: np.ndarray) -> dict:
        scores = ns["evaluate"](probs[idx], labels[idx], positive, 0, 0, tables=False)
        return {key: scores.get(key) for key in ("value", "accuracy", "sensitivity", "specificity")}

    scores = ns["evaluate"](probs, labels, positive, 0, 0)
    return {**scores, "positive_label": names[positive] if positive is not None else None}, figures


def _anomaly(run, records, label_dict, predictions, cfg) -> tuple[dict, Statistic]:
    ns = template_namespace(run, "anomaly_detection", "train.py")
    normal = cfg.get("normal_label")
    if normal not in label_dict:
        raise ValueError(f"config.json's normal_label {normal!r} is none of the labels {sorted(label_dict)}")
    y = np.array([str(r["label"]) != normal for r in records])
    s = np.array([_number(p.get("score"), f"the score of {p.get('image')}") for p in predictions])
    return {"value": ns["auroc"](y, s), "normal_label": normal}, lambda idx: {"value": ns["auroc"](y[idx], s[idx])}


def _report(run, records, label_dict, predictions, cfg) -> tuple[dict, Statistic]:
    ns = template_namespace(run, "report_generation", "train.py")
    tokenize, stats_of, bleu = ns["tokenize"], ns["ngram_stats"], ns["bleu_from_stats"]
    stats = np.stack([stats_of(tokenize(str(p.get("generated", ""))), tokenize(str(r.get("report", ""))))
                      for p, r in zip(predictions, records)])
    figures = {"value": bleu(stats, 4), **{f"bleu{n}": bleu(stats, n) for n in (1, 2, 3, 4)}}
    return figures, lambda idx: {"value": bleu(stats[idx], 4)}


def _segmentation(run, records, label_dict, predictions, cfg) -> tuple[dict, Statistic]:
    """Dice per case is read from the predictions (its masks are in the training grid): the mean and the
    interval are medbuilder's, over the fixed cases; the per-case values are the script's."""
    dice = np.array([_number(p.get("dice"), f"the Dice of {p.get('image')}") for p in predictions])
    return ({"value": float(dice.mean()), "per_case_from": "the training script (masks not re-read)"},
            lambda idx: {"value": float(dice[idx].mean())})


def _intervals(records: list[dict], statistic: Statistic, cfg: dict) -> dict:
    """Each figure's 95% interval over independent units, and the figures on one image per unit."""
    unit, units = independent_units(records)
    n_boot, seed = _boot(cfg)
    intervals = cluster_bootstrap(statistic, units, n_boot, seed)
    single = one_per_unit(units)
    return {"ci95": intervals.get("value"), **{f"{k}_ci95": v for k, v in intervals.items() if k != "value"},
            "interval": f"percentile bootstrap over independent {unit}s ({n_boot} resamples)",
            "unit": unit, "n_units": int(len(single)), "units_note": describe(len(records), unit, len(single)),
            "one_per_unit": {"n": int(len(single)), **{k: _finite(v) for k, v in statistic(single).items()}}}


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


COMPUTE = {"diagnosis": _diagnosis, "anomaly_detection": _anomaly, "report_generation": _report,
           "segmentation": _segmentation}
METRIC = {"diagnosis": "auroc", "anomaly_detection": "auroc", "report_generation": "bleu4", "segmentation": "dice"}


def verify(run: RunFolder, source: Path, task: str, reported: dict | None) -> dict:
    """medbuilder's figure for the predictions in `source` on the fixed split, and the problems found."""
    result = {"task": task, "metric": METRIC[task], "value": None, "ci95": None, "problems": []}
    try:
        records, label_dict = fixed_test_split(run)
        predictions, cfg = read_predictions(Path(source))
        ordered, result["problems"] = _coverage(records, predictions)
        if not result["problems"]:
            figures, statistic = COMPUTE[task](run, records, label_dict, ordered, cfg)
            result.update({**figures, **_intervals(records, statistic, cfg)})
    except (ValueError, KeyError, FileNotFoundError, UntrustedFileError) as err:
        result["problems"].append(f"medbuilder could not compute the metric from the predictions: {err}")
    result["n_test"] = len(records) if "records" in locals() else None
    if isinstance(result["value"], float) and not math.isfinite(result["value"]):
        result["value"] = None  # one class only in the test split: no AUROC (the role's check says so)
    value, claimed = result["value"], (reported or {}).get("value")
    result["reported_value"] = claimed
    if value is not None and not (isinstance(claimed, (int, float)) and abs(float(claimed) - value) <= TOLERANCE):
        result["problems"].append(f"metrics.json reports {result['metric']} = {claimed}, but the predictions on the "
                                  f"fixed test split give {value:.4f}: report what train.py computes, do not edit "
                                  "metrics.json")
    return result


def verified_metrics(reported: dict, verified: dict) -> dict:
    """The round's metrics.json: the script's fields, with every figure medbuilder computed put in their place."""
    figures = {k: v for k, v in verified.items() if k not in ("problems", "task", "reported_value")}
    return {**reported, **figures, "verified_by": "medbuilder", "reported_value": verified.get("reported_value")}
