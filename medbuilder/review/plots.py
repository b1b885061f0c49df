"""Figures for the review: ROC curve, confusion matrix, Dice distribution (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_png(labels: list[int], scores: list[float], auc: float, path: Path) -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC on the test split")
    ax.legend(loc="lower right")
    return _save(fig, path)


def confusion_png(matrix: list[list[int]], names: list[str], path: Path) -> Path:
    data = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(data, cmap="Blues")
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > data.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, path)


def dice_png(values: list[float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(values, bins=min(20, max(3, len(values))), range=(0, 1), color="tab:green")
    ax.set(xlabel="Dice per test case", ylabel="cases", title="Dice distribution")
    return _save(fig, path)
