"""Reference pipeline for anomaly detection: a plain convolutional autoencoder trained on the normal
class; the per-image reconstruction MSE scores the test images; metric: AUROC (anomalous = positive).

    python benchmarks/references/anomaly_detection.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import EnsureChannelFirst, LoadImage, Resize, ScaleIntensity
from sklearn.metrics import roc_auc_score
from torch import nn

from _shared import (Clock, emit, first_n, load_images, optimise, optimizer_and_schedule, parse, read_split,
                     shuffled_batches, train_epochs)


class AutoEncoder(nn.Module):
    def __init__(self, cin: int, size, channels, latent: int):
        super().__init__()
        enc, prev = [], cin
        for ch in channels:
            enc += [nn.Conv2d(prev, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.LeakyReLU(0.2)]
            prev = ch
        self.enc = nn.Sequential(*enc)
        self.grid = [int(s) // 2 ** len(channels) for s in size]
        flat = channels[-1] * math.prod(self.grid)
        self.down, self.up = nn.Linear(flat, latent), nn.Linear(latent, flat)
        rev, dec = list(reversed(channels)), []
        for a, b in zip(rev, rev[1:]):
            dec += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
        dec += [nn.ConvTranspose2d(rev[-1], cin, 4, 2, 1), nn.Sigmoid()]
        self.dec = nn.Sequential(*dec)
        self.top = channels[-1]

    def forward(self, x):
        code = self.down(self.enc(x).flatten(1))
        return self.dec(self.up(code).view(len(x), self.top, *self.grid))


def main() -> None:
    cfg, args = parse("Reference anomaly-detection pipeline (plain PyTorch autoencoder).")
    clock = Clock()
    train, test, label_dict = read_split(args.index_dir)
    names = sorted(label_dict, key=label_dict.get) if label_dict else sorted({r["label"] for r in train})
    normal = cfg.get("normal_label") or ("no" if "no" in names else names[0])
    seed = int(cfg.get("seed", 0))
    train = first_n([r for r in train if r["label"] == normal], cfg.get("max_train_items"), seed, None)
    test = first_n(test, cfg.get("max_test_items"), seed)
    steps = [LoadImage(image_only=True), EnsureChannelFirst(), Resize(list(cfg["image_size"]), mode="area"), ScaleIntensity()]
    xtr, xte = load_images(train, cfg, steps), load_images(test, cfg, steps)
    y = np.array([r["label"] != normal for r in test], dtype=int)

    model = AutoEncoder(int(cfg.get("in_channels", 1)), cfg["image_size"], list(cfg.get("channels") or [16, 32, 64, 128]),
                        int(cfg.get("latent_dim", 128)))
    bs = int(cfg["batch_size"])
    opt, sched = optimizer_and_schedule(model, cfg, -(-len(xtr) // bs))

    def step(x):
        opt.zero_grad()
        return optimise(opt, sched, ((model(x) - x) ** 2).mean())

    train_epochs(cfg, clock, model, lambda: ((xtr[idx],) for idx in shuffled_batches(len(xtr), bs)), step)
    model.eval()
    with torch.no_grad():
        scores = torch.cat([((model(xte[i:i + 64]) - xte[i:i + 64]) ** 2).flatten(1).mean(1)
                            for i in range(0, len(xte), 64)]).numpy()
    auroc = roc_auc_score(y, scores) if len(set(y)) == 2 else float("nan")
    emit("auroc", auroc, clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"],
         schedule_epochs=int(cfg["epochs"]), normal_label=normal)


if __name__ == "__main__":
    main()
