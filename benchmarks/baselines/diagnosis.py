"""Standard-recipe baseline for diagnosis: MONAI's DenseNet121 classifier as in its MedNIST tutorial.

    python benchmarks/baselines/diagnosis.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index \
        --time-budget 90

224 px (96 voxels a side in 3D), intensity scaled to [0, 1], random rotation (15 degrees), flip and
zoom (0.9-1.1), Adam at 1e-4, batch 32, cross-entropy; batches within the budget; test AUROC.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.networks.nets import DenseNet121
from monai.transforms import (Compose, EnsureChannelFirst, LoadImage, RandFlip, RandRotate, RandZoom, Resize,
                              ScaleIntensity)
from sklearn.metrics import roc_auc_score

from _common import Budget, class_names, parse, positive_index, split
from _shared import load_images

RECIPE = "MONAI DenseNet121, 224 px, Adam 1e-4, batch 32, rotate/flip/zoom (MedNIST tutorial)"


def load_all(records: list[dict], size: list[int], channels: int) -> torch.Tensor:
    return load_images(records, {"in_channels": channels}, [LoadImage(image_only=True), EnsureChannelFirst(),
                                                           ScaleIntensity(), Resize(size)])


def main() -> None:
    facts, args = parse("Standard-recipe diagnosis baseline (MONAI DenseNet121).")
    budget = Budget(args.time_budget)
    train, test, labels = split(args, facts)
    names = class_names(train, labels)
    positive = positive_index(names, facts)
    dims, channels = int(facts.get("spatial_dims", 2)), int(facts.get("in_channels", 1))
    size = [224, 224] if dims == 2 else [96, 96, 96]
    xtr, ytr = load_all(train, size, channels), torch.tensor([names.index(r["label"]) for r in train])
    xte, yte = load_all(test, size, channels), np.array([names.index(r["label"]) for r in test])
    augment = Compose([RandRotate(range_x=math.pi / 12, prob=0.5, keep_size=True), RandFlip(spatial_axis=0, prob=0.5),
                       RandZoom(min_zoom=0.9, max_zoom=1.1, prob=0.5)])
    model = DenseNet121(spatial_dims=dims, in_channels=channels, out_channels=len(names))
    opt, loss_fn = torch.optim.Adam(model.parameters(), 1e-4), torch.nn.CrossEntropyLoss()

    def step(idx):
        x = torch.stack([torch.as_tensor(np.asarray(augment(img)), dtype=torch.float32) for img in xtr[idx]])
        model.train()
        opt.zero_grad()
        loss_fn(model(x), ytr[idx]).backward()
        opt.step()
        return len(idx)

    budget.train(lambda: torch.randperm(len(xtr)).split(32), step, len(xte))
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(xte[i:i + 32]).softmax(1) for i in range(0, len(xte), 32)]).numpy()
    y = (yte == positive).astype(int)
    auroc = roc_auc_score(y, probs[:, positive]) if len(set(y)) == 2 else float("nan")
    budget.emit("auroc", auroc, RECIPE, len(train), len(test))


if __name__ == "__main__":
    main()
