"""Reference pipeline for diagnosis: a plain MONAI/PyTorch classifier, trained and scored by test AUROC.

    python benchmarks/references/diagnosis.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index

Reads from the config: spatial_dims, image_size, in_channels, model (cnn / resnet18 / densenet121),
channels, dropout, epochs, batch_size, lr, weight_decay, crop_foreground, class_weights,
max_train_items, max_test_items, seed. Prints one JSON line (metric, value, seconds, images_per_second).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import CropForeground, EnsureChannelFirst, LoadImage, Resize, ScaleIntensity
from sklearn.metrics import roc_auc_score
from torch import nn

from _shared import (Clock, emit, first_n, load_images, optimise, optimizer_and_schedule, parse, random_affine,
                     random_contrast, read_split, shuffled_batches, train_epochs)


class SmallCNN(nn.Module):
    """stride-2 conv stem, then [max-pool, conv-BN-ReLU] per channel count, global pool, dropout, linear."""

    def __init__(self, dims: int, cin: int, n: int, channels, dropout: float):
        super().__init__()
        conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else
                          (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d))
        blocks = [conv(cin, channels[0], 3, 2, 1, bias=False), bn(channels[0]), nn.ReLU()]
        for a, b in zip(channels, channels[1:]):
            blocks += [pool(2), conv(a, b, 3, 1, 1, bias=False), bn(b), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[-1], n))
        self.gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)

    def forward(self, x):
        return self.out(self.gap(self.body(x)))


def network(cfg: dict, n: int) -> nn.Module:
    dims, cin = int(cfg["spatial_dims"]), int(cfg.get("in_channels", 1))
    if cfg.get("model", "cnn") == "resnet18":
        from monai.networks.nets import resnet18
        return resnet18(spatial_dims=dims, n_input_channels=cin, num_classes=n)
    if cfg.get("model") == "densenet121":
        from monai.networks.nets import DenseNet121
        return DenseNet121(spatial_dims=dims, in_channels=cin, out_channels=n)
    return SmallCNN(dims, cin, n, list(cfg.get("channels") or [16, 32, 64, 128, 256]), float(cfg.get("dropout", 0.2)))


def load_all(records: list[dict], cfg: dict) -> torch.Tensor:
    steps = [LoadImage(image_only=True), EnsureChannelFirst(), ScaleIntensity()]
    if cfg.get("crop_foreground", True):
        steps.append(CropForeground(select_fn=lambda x: x > 0.05, margin=2))
    return load_images(records, cfg, steps + [Resize(list(cfg["image_size"]), mode="area")])


def main() -> None:
    cfg, args = parse("Reference diagnosis pipeline (plain MONAI/PyTorch).")
    clock = Clock()
    train, test, label_dict = read_split(args.index_dir)
    seed = int(cfg.get("seed", 0))
    train, test = first_n(train, cfg.get("max_train_items"), seed), first_n(test, cfg.get("max_test_items"), seed)
    names = sorted(label_dict, key=label_dict.get) if label_dict else sorted({r["label"] for r in train})
    positive = names.index(cfg["positive_label"]) if cfg.get("positive_label") in names else (
        names.index("yes") if "yes" in names else len(names) - 1)
    xtr, ytr = load_all(train, cfg), torch.tensor([names.index(r["label"]) for r in train])
    xte, yte = load_all(test, cfg), np.array([names.index(r["label"]) for r in test])

    model = network(cfg, len(names))
    weights = cfg.get("class_weights")
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32) if weights else None)
    bs = int(cfg["batch_size"])
    opt, sched = optimizer_and_schedule(model, cfg, -(-len(xtr) // bs))

    def batches():
        for idx in shuffled_batches(len(xtr), bs):
            x = xtr[idx]
            if cfg.get("augment", True):  # the configuration's augmentation: flips, rotation, zoom, contrast
                flip = torch.rand(len(x)) < 0.5
                x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
                if x.ndim == 4:
                    x = random_affine(x, float(cfg.get("rotate_degrees") or 0), float(cfg.get("zoom") or 0))
                x = random_contrast(x, float(cfg.get("gamma") or 0))
            yield x, ytr[idx]

    def step(x, y):
        opt.zero_grad()
        return optimise(opt, sched, loss_fn(model(x), y))

    train_epochs(cfg, clock, model, batches, step)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(xte[i:i + 64]).softmax(1) for i in range(0, len(xte), 64)]).numpy()
    y_pos = (yte == positive).astype(int)
    auroc = roc_auc_score(y_pos, probs[:, positive]) if len(set(y_pos)) == 2 else float("nan")
    emit("auroc", auroc, clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"], schedule_epochs=int(cfg["epochs"]))


if __name__ == "__main__":
    main()
