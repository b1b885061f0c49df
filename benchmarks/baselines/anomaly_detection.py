"""Standard-recipe baseline for anomaly detection: MONAI's AutoEncoder trained on the normal class,
the per-image reconstruction error as the anomaly score.

    python benchmarks/baselines/anomaly_detection.py --config RUN/rounds/0/config.json \
        --index-dir RUN/workspace/index --time-budget 90

64 px, intensity scaled to [0, 1], AutoEncoder(channels 16-32-64, strides 2), MSE, Adam at 1e-3,
batch 32; batches within the budget; test AUROC with the anomalous images as positives.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets import AutoEncoder
from sklearn.metrics import roc_auc_score

from _common import Budget, class_names, parse, split
from diagnosis import load_all

RECIPE = "MONAI AutoEncoder (16, 32, 64), 64 px, MSE, Adam 1e-3, batch 32, normal images only"


def main() -> None:
    facts, args = parse("Standard-recipe anomaly-detection baseline (MONAI AutoEncoder).")
    budget = Budget(args.time_budget)
    train, test, labels = split(args, facts)
    names = class_names(train, labels)
    normal = facts.get("normal_label") or ("no" if "no" in names else names[0])
    train = [r for r in train if r["label"] == normal]
    dims, channels = int(facts.get("spatial_dims", 2)), int(facts.get("in_channels", 1))
    size = [64] * dims
    xtr, xte = load_all(train, size, channels), load_all(test, size, channels)
    y = np.array([r["label"] != normal for r in test], dtype=int)
    model = AutoEncoder(spatial_dims=dims, in_channels=channels, out_channels=channels, channels=(16, 32, 64),
                        strides=(2, 2, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step(idx):
        x = xtr[idx]
        model.train()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), x).backward()
        opt.step()
        return len(idx)

    budget.train(lambda: torch.randperm(len(xtr)).split(32), step, len(xte))
    model.eval()
    with torch.no_grad():
        scores = torch.cat([((model(xte[i:i + 32]) - xte[i:i + 32]) ** 2).flatten(1).mean(1)
                            for i in range(0, len(xte), 32)]).numpy()
    auroc = roc_auc_score(y, scores) if len(set(y)) == 2 else float("nan")
    budget.emit("auroc", auroc, RECIPE, len(train), len(test), normal_label=normal)


if __name__ == "__main__":
    main()
