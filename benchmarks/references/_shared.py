"""Small helpers shared by the hand-written reference pipelines (arguments, data, timing, output).

Nothing here comes from the templates: the reference scripts are independent plain
MONAI/PyTorch code that train the same model family with the same settings as the
flow's delivered config, so their metric and speed are a baseline for the flow's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch


def parse(description: str) -> tuple[dict, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="the run's rounds/<k>/config.json (sizes, epochs, batch size)")
    parser.add_argument("--index-dir", required=True, help="folder with train.json, test.json (label_dict.json)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs to train (default: the config's)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs, the learning-rate schedule still spanning --epochs "
                             "(as a training that hit its time limit did)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's num_threads)")
    args = parser.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    if args.epochs:
        cfg["epochs"] = args.epochs
    cfg["stop_after"] = min(int(cfg["epochs"]), args.stop_after or int(cfg["epochs"]))
    seed_and_threads(int(cfg.get("seed", 0)), int(args.threads or cfg.get("num_threads") or 2))
    return cfg, args


def seed_and_threads(seed: int, threads: int) -> None:
    """Seed Python, NumPy and torch; set torch's thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def read_split(index_dir: str) -> tuple[list[dict], list[dict], dict]:
    root = Path(index_dir)
    train = json.loads((root / "train.json").read_text())
    test = json.loads((root / "test.json").read_text())
    labels = root / "label_dict.json"
    return train, test, (json.loads(labels.read_text()) if labels.exists() else {})


def first_n(records: list[dict], n: int | None, seed: int, key: str | None = "label") -> list[dict]:
    """At most n records, a seeded random choice taken in proportion per class (all when n is None)."""
    if not n or len(records) <= n:
        return records
    rng = random.Random(seed)
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get(key) if key else None, []).append(r)
    out = []
    for items in groups.values():
        take = max(1, round(n * len(items) / len(records)))
        out += rng.sample(items, min(take, len(items)))
    return out[:n]


def load_images(records: list[dict], cfg: dict, steps: list) -> torch.Tensor:
    """Each record's image through `steps` (MONAI array transforms), stacked as float32 with the
    config's channel count (an RGB file for a grey model is averaged, a grey one repeated)."""
    from monai.transforms import Compose

    load, cin = Compose(steps), int(cfg.get("in_channels", 1))
    images = []
    for r in records:
        x = torch.as_tensor(np.asarray(load(r["image"])), dtype=torch.float32)
        if x.shape[0] != cin:
            x = x.mean(0, keepdim=True).repeat(cin, *[1] * (x.ndim - 1))
        images.append(x)
    return torch.stack(images)


def optimizer_and_schedule(model: torch.nn.Module, cfg: dict, steps_per_epoch: int):
    """AdamW with the config's learning rate and weight decay; a cosine schedule over all epochs."""
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 1e-4)))
    total = int(cfg["epochs"]) * max(1, steps_per_epoch)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))


def optimise(opt, sched, loss: torch.Tensor, model: torch.nn.Module | None = None, clip: float | None = None) -> float:
    """One optimiser step on `loss` (gradients clipped to `clip` when given); returns the loss value."""
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return float(loss.item())


def train_epochs(cfg: dict, clock: "Clock", model: torch.nn.Module, batches, step) -> None:
    """The config's `stop_after` epochs: `batches()` gives one epoch's batches (tuples whose first item
    holds the images); `step(*batch)` zeroes the gradients, computes the loss and calls `optimise`.
    Only `step` counts as step time; the loop time includes batching and augmentation."""
    loop_start = time.perf_counter()
    for epoch in range(cfg["stop_after"]):
        model.train()
        for batch in batches():
            t = time.perf_counter()
            loss = step(*batch)
            clock.steps += time.perf_counter() - t
            clock.seen += len(batch[0])
        print(f"epoch {epoch + 1}/{cfg['epochs']} loss {loss:.5f}", flush=True)
    clock.loop = time.perf_counter() - loop_start


def random_affine(x: torch.Tensor, degrees: float, zoom: float) -> torch.Tensor:
    """A 2D batch (B, C, H, W), each image rotated by up to +-degrees and scaled by 1 +- zoom (uniform draws),
    bilinear, zeros outside: the configuration's augmentation, written here with torch's affine grid."""
    if degrees <= 0 and zoom <= 0:
        return x
    b = len(x)
    angle = (torch.rand(b) * 2 - 1) * math.radians(degrees)
    scale = 1 + (torch.rand(b) * 2 - 1) * zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_contrast(x: torch.Tensor, log_range: float) -> torch.Tensor:
    """Each image (values in [0, 1]) raised to a power whose logarithm is uniform in +-log_range."""
    if log_range <= 0:
        return x
    power = torch.exp((torch.rand(len(x)) * 2 - 1) * log_range).view(-1, *[1] * (x.ndim - 1))
    return x.clamp(min=0) ** power


def shuffled_batches(n: int, batch_size: int):
    """Index tensors of one epoch's batches in a random order."""
    order = torch.randperm(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class Clock:
    """Wall time of the whole script, of the training loop, and of the training steps alone."""

    def __init__(self):
        self.start = time.perf_counter()
        self.loop = 0.0
        self.steps = 0.0
        self.seen = 0


def emit(metric: str, value: float, clock: Clock, **extra) -> None:
    """One JSON line on stdout: the metric, seconds and training images per second."""
    out = {"metric": metric, "value": float(value), "seconds": round(time.perf_counter() - clock.start, 2),
           "train_loop_seconds": round(clock.loop, 2),
           "images_per_second": round(clock.seen / max(clock.steps, 1e-9), 1),
           "images_per_second_loop": round(clock.seen / max(clock.loop, 1e-9), 1), **extra}
    print(json.dumps(out), flush=True)
