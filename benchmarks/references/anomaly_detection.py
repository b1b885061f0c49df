"""Reference pipeline for anomaly detection: a plain convolutional autoencoder trained on the normal
class; the per-image reconstruction MSE scores the test images; metric: AUROC (anomalous = positive).

    python benchmarks/references/anomaly_detection.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, ScaleIntensity
from sklearn.metrics import roc_auc_score
from torch import nn

from _shared import Clock, cosine, emit, first_n, parse, read_split


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


def load_all(records: list[dict], cfg: dict) -> torch.Tensor:
    load, cin = Compose([LoadImage(image_only=True), EnsureChannelFirst(), Resize(list(cfg["image_size"]), mode="area"),
                         ScaleIntensity()]), int(cfg.get("in_channels", 1))
    out = []
    for r in records:
        x = torch.as_tensor(np.asarray(load(r["image"])), dtype=torch.float32)
        if x.shape[0] != cin:
            x = x.mean(0, keepdim=True).repeat(cin, 1, 1)
        out.append(x)
    return torch.stack(out)


def main() -> None:
    cfg, args = parse("Reference anomaly-detection pipeline (plain PyTorch autoencoder).")
    clock = Clock()
    train, test, label_dict = read_split(args.index_dir)
    names = sorted(label_dict, key=label_dict.get) if label_dict else sorted({r["label"] for r in train})
    normal = cfg.get("normal_label") or ("no" if "no" in names else names[0])
    seed = int(cfg.get("seed", 0))
    train = first_n([r for r in train if r["label"] == normal], cfg.get("max_train_items"), seed, None)
    test = first_n(test, cfg.get("max_test_items"), seed)
    xtr, xte = load_all(train, cfg), load_all(test, cfg)
    y = np.array([r["label"] != normal for r in test], dtype=int)

    model = AutoEncoder(int(cfg.get("in_channels", 1)), cfg["image_size"], list(cfg.get("channels") or [16, 32, 64, 128]),
                        int(cfg.get("latent_dim", 128)))
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 1e-4)))
    bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    sched = cosine(opt, epochs * -(-len(xtr) // bs))
    loop_start = time.perf_counter()
    for epoch in range(cfg["stop_after"]):
        model.train()
        order = torch.randperm(len(xtr))
        for i in range(0, len(order), bs):
            x = xtr[order[i:i + bs]]
            t = time.perf_counter()
            opt.zero_grad()
            loss = ((model(x) - x) ** 2).mean()
            loss.backward()
            opt.step()
            sched.step()
            clock.steps += time.perf_counter() - t
            clock.seen += len(x)
        print(f"epoch {epoch + 1}/{epochs} loss {loss.item():.5f}", flush=True)
    clock.loop = time.perf_counter() - loop_start

    model.eval()
    with torch.no_grad():
        scores = torch.cat([((model(xte[i:i + 64]) - xte[i:i + 64]) ** 2).flatten(1).mean(1)
                            for i in range(0, len(xte), 64)]).numpy()
    auroc = roc_auc_score(y, scores) if len(set(y)) == 2 else float("nan")
    emit("auroc", auroc, clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"], schedule_epochs=epochs, normal_label=normal)


if __name__ == "__main__":
    main()
