"""Temperature scaling of a diagnosis round, fitted on its validation split, never on the test split.

The validation split is the one the template held out of train.json to pick the best epoch (``val_fraction``,
stratified, patients and copies kept whole): medbuilder rebuilds it with its own copy of the template's
``split_records`` from host copies of the index files (read without following links), predicts it with its
own predictor, and finds the temperature T that minimises the negative log-likelihood of softmax(logits / T)
there. The test split then shows the figures before and after: expected calibration error, log loss and
Brier score. Ranking, and so AUROC, does not change; a threshold carries over as sigmoid(logit(t) / T).

It is fitted for every binary diagnosis round that has a validation split (``report/round-<k>/calibration.json``)
and offered at the review gate when the test ECE is above ``OFFER_ECE``; the clinician accepts it with the
review answer's ``calibrate``, and the bundle is delivered with the temperature (``calibration.json``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

OFFER_ECE = 0.05
MIN_VALIDATION = 10
BOUNDS = (0.05, 20.0)
EPS = 1e-6


def _log_probs(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, EPS, 1.0))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    p = _softmax(logits / t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], EPS, 1.0))))


def fit(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda t: nll(logits, labels, t), bounds=BOUNDS, method="bounded")
    return float(found.x)


def ece(probs: np.ndarray, labels: np.ndarray, positive: int, bins: int = 10) -> float:
    """Expected calibration error of the positive-class probability (the interpretability report's binning)."""
    p, y = probs[:, positive], (labels == positive).astype(float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(y[index == b].mean() - p[index == b].mean()) * (index == b).mean()
                     for b in range(bins) if (index == b).any()))


def figures(probs: np.ndarray, labels: np.ndarray, positive: int) -> dict:
    y = (labels == positive).astype(float)
    return {"ece": round(ece(probs, labels, positive), 4),
            "log_loss": round(float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1)))), 4),
            "brier": round(float(np.mean((probs[:, positive] - y) ** 2)), 4)}


def carried_threshold(threshold: float, t: float) -> float:
    """The threshold on calibrated probabilities that makes the same calls as `threshold` did before."""
    threshold = min(max(threshold, EPS), 1 - EPS)
    return 1.0 / (1.0 + math.exp(-math.log(threshold / (1 - threshold)) / t))


def _val_fraction(snapshot: Path):
    return json.loads((Path(snapshot) / "config.json").read_text()).get("val_fraction")


def _host_index(run, folder: Path) -> Path:
    """train.json from the workspace index, test.json and label_dict.json from the fixed split, copied without
    following links into a folder of medbuilder's."""
    from medbuilder.protocol.untrusted import copy_nofollow

    shutil.rmtree(folder, ignore_errors=True)
    copy_nofollow(run.index_dir, "train.json", folder / "train.json")
    for name in ("test.json", "label_dict.json"):
        shutil.copyfile(run.path(f"fixed_split/{name}"), folder / name)
    return folder


def validation_items(run, snapshot: Path) -> list[dict]:
    """The round's validation records, rebuilt with medbuilder's copy of the template's split."""
    from medbuilder.review.trusted_code import TRUSTED_CODE
    from medbuilder.review.verified_metric import template_namespace

    cfg = template_namespace(run, "diagnosis", "predict.py")["read_config"](Path(snapshot) / "config.json")
    ns = template_namespace(run, "diagnosis", "dataloader.py")
    cfg["index_dir"] = str(_host_index(run, run.root / TRUSTED_CODE / "calibration-index"))
    return ns["split_records"](cfg)["val"]


def validation_probabilities(predictor, paths: list[str]) -> np.ndarray:
    """(N, classes) probabilities at temperature 1, columns in class-index order: the images read from the store
    where it holds them (else prepared a thread per image), then the network in batches."""
    from medbuilder.review.saliency import class_probabilities
    from medbuilder.review.shortcuts import prepare_all

    return class_probabilities(predictor, prepare_all(predictor, paths)).numpy().astype(float)


def for_round(run, snapshot: Path, out_dir: Path) -> dict | None:
    """Fit T on the validation split and give the test figures before and after; {"temperature": None, "reason"}
    without a validation split of MIN_VALIDATION images of both classes; None for a model that is not binary."""
    from medbuilder.review.interpret import load_predictor
    from medbuilder.review.verified_metric import fixed_test_split, read_predictions

    predictor = load_predictor(run.workspace, snapshot)
    if predictor.positive is None:
        return None
    val = validation_items(run, snapshot)
    val_labels = np.array([int(item["label"]) for item in val])
    if len(val) < MIN_VALIDATION or len(set(val_labels.tolist())) < 2:
        return {"temperature": None, "n_validation": len(val), "offer_ece": OFFER_ECE,
                "reason": f"the round has no validation split of {MIN_VALIDATION} images or more with both classes "
                          f"({len(val)} held out of training: val_fraction {_val_fraction(snapshot)}); fitting on "
                          "the test split would make the test figures optimistic, so no temperature is fitted"}
    names = [predictor.names[i] for i in sorted(predictor.names)]
    val_probs = validation_probabilities(predictor, [i["image"] for i in val])
    t = fit(_log_probs(val_probs), val_labels)
    test, label_dict = fixed_test_split(run)
    predictions, _ = read_predictions(Path(snapshot))
    by_image = {str(p["image"]): p for p in predictions}
    test_probs = np.array([[float(by_image[str(r["image"])]["probabilities"][n]) for n in names] for r in test])
    test_labels = np.array([label_dict[str(r["label"])] for r in test])
    after = _softmax(_log_probs(test_probs) / t)
    result = {"temperature": round(t, 4), "fitted_on": "validation split (held out of train.json; not the test split)",
              "n_validation": len(val), "validation": {"before": figures(val_probs, val_labels, predictor.positive),
                                                       "after": figures(_softmax(_log_probs(val_probs) / t), val_labels,
                                                                        predictor.positive)},
              "test": {"before": figures(test_probs, test_labels, predictor.positive),
                       "after": figures(after, test_labels, predictor.positive)},
              "offer_ece": OFFER_ECE, "positive_label": names[predictor.positive]}
    result["offered"] = result["test"]["before"]["ece"] > OFFER_ECE
    (Path(out_dir) / "calibration.json").write_text(json.dumps(result, indent=1))
    return result


def section(c: dict | None, ece_now: float | None = None) -> str | None:
    """The review gate's calibration section: the offer, or why there is none when the ECE is high."""
    if not c:
        return None
    if c.get("temperature") is None:
        if ece_now is None or ece_now <= c["offer_ece"]:
            return None
        return "\n".join(["### Calibration", "", f"The test ECE, {ece_now:.3f}, is above {c['offer_ece']}, but "
                           f"temperature scaling cannot be offered: {c['reason']}."])
    before, after = c["test"]["before"], c["test"]["after"]
    verdict = (f"The test ECE is above {c['offer_ece']}: medbuilder offers temperature scaling. Answer approve with "
               "**calibrate** to deliver the model with it (the same calls at the same operating point; only the "
               "probabilities change)." if c["offered"] else
               f"The test ECE is at most {c['offer_ece']}: no calibration is needed (it can still be asked for).")
    return "\n".join(["### Calibration", "", verdict, "",
                      f"Temperature T = {c['temperature']:.3f}, fitted on the validation split ({c['n_validation']} "
                      "images held out of training; never the test split). On the test split:", "",
                      "| | ECE | log loss | Brier |", "|---|---|---|---|",
                      f"| as trained | {before['ece']:.3f} | {before['log_loss']:.3f} | {before['brier']:.3f} |",
                      f"| with T | {after['ece']:.3f} | {after['log_loss']:.3f} | {after['brier']:.3f} |"])
