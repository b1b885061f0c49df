"""Evaluation of one training round: snapshot the round, metrics with intervals, figures.

Round k's files are copied to ``rounds/<k>/`` (metrics, predictions, config,
checkpoint) so that refinement rounds can be compared and the approved round
delivered; figures and a summary go to ``report/round-<k>/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from medbuilder.protocol.artifacts import RunFolder
from medbuilder.review import plots

SNAPSHOT = ["metrics.json", "predictions.json", "config.json", "train_log.jsonl", "template_fill.json",
            "checkpoints/model.pt"]


def snapshot_round(run: RunFolder, k: int) -> Path:
    target = run.root / "rounds" / str(k)
    for rel in SNAPSHOT:
        source = run.workspace / rel
        if source.exists():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    return target


def _figures(metrics: dict, predictions: list[dict], folder: Path) -> list[str]:
    made = []
    if metrics["metric"] == "auroc" and predictions and "score" in predictions[0]:
        positive = metrics.get("positive_label")
        labels = [int(p["label"] == positive) if positive else int(p.get("target", 0)) for p in predictions]
        if 0 < sum(labels) < len(labels):
            made.append(plots.roc_png(labels, [p["score"] for p in predictions], metrics["value"], folder / "roc.png"))
    if metrics.get("confusion_matrix"):
        names = sorted(metrics.get("label_dict", {}), key=metrics["label_dict"].get)
        made.append(plots.confusion_png(metrics["confusion_matrix"], names, folder / "confusion.png"))
    if metrics["metric"] == "dice" and metrics.get("per_case_dice"):
        made.append(plots.dice_png(metrics["per_case_dice"], folder / "dice.png"))
    return [str(p.relative_to(folder.parent.parent)) for p in made]


def evaluate_round(run: RunFolder, k: int) -> dict:
    """Snapshot round k and write report/round-k/summary.json with the metric and figures."""
    snapshot = snapshot_round(run, k)
    metrics = json.loads((snapshot / "metrics.json").read_text())
    predictions_file = snapshot / "predictions.json"
    predictions = json.loads(predictions_file.read_text()) if predictions_file.exists() else []
    folder = run.root / "report" / f"round-{k}"
    summary = {"round": k, "metric": metrics["metric"], "value": metrics["value"], "ci95": metrics.get("ci95"),
               "n_train": metrics.get("n_train"), "n_test": metrics.get("n_test"),
               "extras": {key: metrics[key] for key in ("accuracy", "sensitivity", "specificity", "balanced_accuracy")
                          if key in metrics},
               "figures": _figures(metrics, predictions, folder)}
    run.write(f"report/round-{k}/summary.json", summary)
    return summary
