"""Training engine shared by every medbuilder template: the loop, checkpoints and metrics.

Copied into each workspace as ``engine.py`` beside ``common.py``; depends only on
numpy and torch. ``fit`` trains with AdamW and a cosine schedule, logs one line per
epoch (stdout and ``train_log.jsonl``) and keeps the best epoch by validation loss;
``auroc`` and ``bootstrap_ci`` give the metric and its 95% interval; ``finish``
writes ``metrics.json`` and ``predictions.json``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

# ----------------------------------------------------------------------------- training loop


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 1e-4)))


def make_scheduler(optimizer, cfg: dict, steps_per_epoch: int):
    """'cosine': short linear warm-up then cosine decay over all steps; 'constant': none."""
    if cfg.get("lr_schedule", "cosine") == "constant":
        return None
    total = max(1, int(cfg["epochs"]) * max(1, steps_per_epoch))
    warmup = min(max(1, total // 20), 100)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(model: torch.nn.Module, train_loader: Iterable, cfg: dict, out: Path,
        train_step: Callable[[dict], tuple[torch.Tensor, int]],
        val_loader: Iterable | None = None,
        val_step: Callable[[dict], tuple[float, int]] | None = None,
        checkpoint_extra: dict | None = None) -> dict:
    """The training loop every template uses.

    ``train_step(batch) -> (loss, n_items)`` computes a differentiable loss;
    ``val_step(batch) -> (loss_sum, n_items)`` a validation loss. One line per epoch
    goes to stdout and to ``train_log.jsonl``; ``checkpoints/last.pt`` is written
    every epoch and ``checkpoints/best.pt`` when the validation loss improves. On
    return the model holds the best weights (lowest validation loss, or the last
    epoch without validation) and ``checkpoints/model.pt`` holds them too.
    """
    epochs = int(cfg["epochs"])
    time_limit = cfg.get("time_limit_s")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    log_file = out / "train_log.jsonl"
    log_file.write_text("")
    extra = checkpoint_extra or {}
    best_loss, best_epoch, best_state = math.inf, 0, None
    seen, step_seconds, train_loss, stopped_early = 0, 0.0, math.nan, False
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, n_sum = 0.0, 0
        for batch in train_loader:
            loss, n = train_step(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(loss.detach()) * n
            n_sum += n
            if time_limit and time.perf_counter() - start > float(time_limit):
                stopped_early = True
                break
        epoch_train_seconds = time.perf_counter() - t0
        step_seconds += epoch_train_seconds
        seen += n_sum
        train_loss = loss_sum / max(1, n_sum)
        val_loss = None
        if val_loader is not None and val_step is not None:
            model.eval()
            v_sum, v_n = 0.0, 0
            with torch.no_grad():
                for batch in val_loader:
                    s, n = val_step(batch)
                    v_sum, v_n = v_sum + s, v_n + n
            val_loss = v_sum / max(1, v_n)
        entry = {"epoch": epoch, "train_loss": round(train_loss, 6),
                 "val_loss": None if val_loss is None else round(val_loss, 6),
                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2),
                 "images_per_second": round(n_sum / max(epoch_train_seconds, 1e-9), 1),
                 "peak_rss_mb": round(peak_rss_mb(), 1)}
        with log_file.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        val_text = "" if val_loss is None else f"  val_loss {val_loss:.4f}"
        print(f"epoch {epoch}/{epochs}  train_loss {train_loss:.4f}{val_text}  lr {entry['lr']:.2e}  "
              f"{entry['seconds']:.1f}s  {entry['images_per_second']:.1f} img/s", flush=True)
        save_checkpoint(out / "checkpoints" / "last.pt", model, cfg, epoch, extra)
        score = val_loss if val_loss is not None else -epoch  # without validation: the last epoch
        if score < best_loss:
            best_loss, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
            if val_loss is not None:
                save_checkpoint(out / "checkpoints" / "best.pt", model, cfg, epoch, extra)
        if stopped_early:
            print(f"time_limit_s={time_limit} reached: stopping after epoch {epoch}", flush=True)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    save_checkpoint(out / "checkpoints" / "model.pt", model, cfg, best_epoch, extra)
    return {"epochs": epoch, "best_epoch": best_epoch, "final_train_loss": train_loss,
            "train_seconds": round(time.perf_counter() - start, 2),
            "images_per_second": round(seen / max(step_seconds, 1e-9), 1), "stopped_early": stopped_early}


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: dict, epoch: int, extra: dict | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": cfg, "epoch": epoch, **(extra or {})}, path)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# ----------------------------------------------------------------------------- metrics


def auroc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); nan with one class only."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n_items: int, n_boot: int = 1000,
                 seed: int = 0) -> list[float]:
    """95% percentile interval of statistic(indices) over resampled test cases."""
    if n_items < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        v = statistic(rng.integers(0, n_items, n_items))
        if v is not None and not math.isnan(v):
            values.append(v)
    if not values:
        return [math.nan, math.nan]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / (1024.0 * 1024.0)


def clean(value):
    """JSON-safe: numpy scalars to Python, nan/inf to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, obj) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(clean(obj), indent=1))
    os.replace(tmp, path)


def finish(out: Path, metrics: dict, predictions: list[dict], started: float) -> dict:
    """Write metrics.json and predictions.json and print the headline line."""
    metrics["total_seconds"] = round(time.perf_counter() - started, 2)
    metrics["peak_rss_mb"] = round(peak_rss_mb(), 1)
    write_json(out / "predictions.json", predictions)
    write_json(out / "metrics.json", metrics)
    ci = metrics.get("ci95") or [None, None]
    fmt = lambda v: "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
    print(f"{metrics['metric']} {fmt(metrics['value'])} (95% CI {fmt(ci[0])}-{fmt(ci[1])}) on "
          f"{metrics['n_test']} test cases; wrote {out / 'metrics.json'}", flush=True)
    return metrics
