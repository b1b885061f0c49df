"""Reference pipeline for diagnosis: a plain MONAI/PyTorch classifier, trained and scored by test AUROC.

    python benchmarks/references/diagnosis.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index

Reads from the config: spatial_dims, image_size, in_channels, model (cnn / resnet18 / densenet121),
channels, dropout, epochs, batch_size, lr, weight_decay, crop_foreground, class_weights,
max_train_items, max_test_items, seed. Prints one JSON line (metric, value, seconds, images_per_second).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from monai.transforms import Compose, CropForeground, EnsureChannelFirst, LoadImage, Resize, ScaleIntensity
from sklearn.metrics import roc_auc_score
from torch import nn

from _shared import Clock, cosine, emit, first_n, parse, read_split


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
    steps.append(Resize(list(cfg["image_size"]), mode="area"))
    load, cin = Compose(steps), int(cfg.get("in_channels", 1))
    images = []
    for r in records:
        x = torch.as_tensor(np.asarray(load(r["image"])), dtype=torch.float32)
        if x.shape[0] != cin:  # RGB file, grey model (or the reverse)
            x = x.mean(0, keepdim=True).repeat(cin, *[1] * (x.ndim - 1))
        images.append(x)
    return torch.stack(images)


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
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 1e-4)))
    bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    sched = cosine(opt, epochs * -(-len(xtr) // bs))
    loop_start = time.perf_counter()
    for epoch in range(cfg["stop_after"]):
        model.train()
        order = torch.randperm(len(xtr))
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            x, y = xtr[idx], ytr[idx]
            if cfg.get("augment", True):  # random flips along the last axis
                flip = torch.rand(len(x)) < 0.5
                x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
            t = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            clock.steps += time.perf_counter() - t
            clock.seen += len(idx)
        print(f"epoch {epoch + 1}/{epochs} loss {loss.item():.4f}", flush=True)
    clock.loop = time.perf_counter() - loop_start

    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(xte[i:i + 64]).softmax(1) for i in range(0, len(xte), 64)]).numpy()
    y_pos = (yte == positive).astype(int)
    auroc = roc_auc_score(y_pos, probs[:, positive]) if len(set(y_pos)) == 2 else float("nan")
    emit("auroc", auroc, clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"], schedule_epochs=epochs)


if __name__ == "__main__":
    main()
