"""Small helpers shared by the hand-written reference pipelines (arguments, data, timing, output).

Nothing here comes from the templates: the reference scripts are independent plain
MONAI/PyTorch code that train the same model family with the same settings as the
flow's delivered config, so their metric and speed are a baseline for the flow's.
"""

from __future__ import annotations

import argparse
import json
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
    seed = int(cfg.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(int(args.threads or cfg.get("num_threads") or 2))
    return cfg, args


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


def cosine(optimizer, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


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
