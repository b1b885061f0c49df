"""Training engine shared by every medbuilder template: the loop, checkpoints and metrics.

Copied into each workspace as ``engine.py`` beside ``common.py``; depends only on
numpy and torch. ``fit`` trains with AdamW and a cosine schedule, logs one line per
epoch (stdout and ``train_log.jsonl``), keeps the best epoch by validation loss and
continues a killed training from ``checkpoints/last.pt`` (same configuration only);
``auroc`` and ``bootstrap_ci`` give the metric and its 95% interval; ``finish``
writes ``metrics.json`` and ``predictions.json``. ``ProgressFile`` keeps ``progress.json`` (what the script
does now: caching k of n items, or epoch and batch) for the host to show while the script runs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

# ----------------------------------------------------------------------------- progress


class ProgressFile:
    """``progress.json`` in the output folder: {"phase": "caching"|"training", counts, "updated"}, replaced
    atomically at most once per `every_s` (and at once when forced), so the host can show a bar."""

    def __init__(self, out: Path | str = ".", every_s: float = 1.0):
        self.path = Path(out) / "progress.json"
        self.every_s, self._last, self._lock = every_s, 0.0, threading.Lock()

    def write(self, force: bool = False, **fields) -> None:
        with self._lock:  # caching fills from several threads
            now = time.time()
            if not force and now - self._last < self.every_s:
                return
            self._last = now
            tmp = self.path.with_name("progress.json.tmp")
            try:
                tmp.write_text(json.dumps({**fields, "updated": now}))
                os.replace(tmp, self.path)
            except OSError:  # progress is for display only: never stop the work for it
                pass


def caching_with_progress(base):
    """`base` (MONAI's CacheDataset) writing "caching k of n" to progress.json as it fills the cache; its
    extra arguments: `progress_file` (a ProgressFile) and `name` (the split)."""

    class CachingWithProgress(base):
        def __init__(self, data, *args, progress_file: ProgressFile, name: str, **kwargs):
            self._progress, self._name, self._done, self._total = progress_file, name, 0, len(data)
            super().__init__(data, *args, **kwargs)  # fills the cache
            self._progress.write(force=True, phase="caching", name=name, done=self._total, total=self._total)

        def _load_cache_item(self, idx: int):
            item = super()._load_cache_item(idx)
            self._done += 1  # threads may lose a count now and then: the number is for display only
            self._progress.write(phase="caching", name=self._name, done=self._done, total=self._total)
            return item

    return CachingWithProgress


def _batches(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:  # an iterable dataset has no length
        return None


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

    Resuming: ``last.pt`` also holds the optimizer, scheduler, RNG states, the best
    epoch so far, the training seconds spent and a hash of the configuration. When
    an unfinished ``last.pt`` with the same hash is found (a killed run), training
    continues from the next epoch, appending to ``train_log.jsonl``; ``time_limit_s``
    counts the seconds spent before the interruption too.
    """
    epochs = int(cfg["epochs"])
    time_limit = cfg.get("time_limit_s")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    log_file = out / "train_log.jsonl"
    extra = checkpoint_extra or {}
    fingerprint = config_hash(cfg, extra)
    state = {"epoch": 0, "best_loss": math.inf, "best_epoch": 0, "seen": 0, "step_seconds": 0.0,
             "train_loss": math.nan, "train_seconds": 0.0}
    best_state = None
    resumed = try_resume(out / "checkpoints", fingerprint, model, optimizer, scheduler)
    if resumed is None:
        log_file.write_text("")
    else:
        state.update(resumed["progress"])
        best_state = resumed["best_state"]
        keep_log_until(log_file, state["epoch"])
        print(f"resumed from epoch {state['epoch']} (checkpoints/last.pt; {state['train_seconds']:.1f}s of training "
              f"already spent)", flush=True)
    stopped_early = False
    start = time.perf_counter() - state["train_seconds"]
    epoch = state["epoch"]
    progress, batches = ProgressFile(out), _batches(train_loader)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, n_sum = 0.0, 0
        for index, batch in enumerate(train_loader, 1):
            progress.write(force=index == 1, phase="training", epoch=epoch, epochs=epochs, batch=index - 1,
                           batches=batches, loss=loss_sum / n_sum if n_sum else None)
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
        state["step_seconds"] += epoch_train_seconds
        state["seen"] += n_sum
        state["train_loss"] = loss_sum / max(1, n_sum)
        val_loss = None
        if val_loader is not None and val_step is not None:
            model.eval()
            v_sum, v_n = 0.0, 0
            with torch.no_grad():
                for batch in val_loader:
                    s, n = val_step(batch)
                    v_sum, v_n = v_sum + s, v_n + n
            val_loss = v_sum / max(1, v_n)
        progress.write(force=True, phase="training", epoch=epoch, epochs=epochs, batch=batches, batches=batches,
                       loss=state["train_loss"])
        entry = {"epoch": epoch, "train_loss": round(state["train_loss"], 6),
                 "val_loss": None if val_loss is None else round(val_loss, 6),
                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2),
                 "images_per_second": round(n_sum / max(epoch_train_seconds, 1e-9), 1),
                 "peak_rss_mb": round(peak_rss_mb(), 1)}
        if resumed is not None and epoch == resumed["progress"]["epoch"] + 1:
            entry["resumed_from"] = resumed["progress"]["epoch"]
        with log_file.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        val_text = "" if val_loss is None else f"  val_loss {val_loss:.4f}"
        print(f"epoch {epoch}/{epochs}  train_loss {state['train_loss']:.4f}{val_text}  lr {entry['lr']:.2e}  "
              f"{entry['seconds']:.1f}s  {entry['images_per_second']:.1f} img/s", flush=True)
        score = val_loss if val_loss is not None else -epoch  # without validation: the last epoch
        if score < state["best_loss"]:
            state["best_loss"], state["best_epoch"] = score, epoch
            best_state = copy.deepcopy(model.state_dict())
            if val_loss is not None:
                save_checkpoint(out / "checkpoints" / "best.pt", model, cfg, epoch, extra)
        state["epoch"], state["train_seconds"] = epoch, time.perf_counter() - start
        save_checkpoint(out / "checkpoints" / "last.pt", model, cfg, epoch, extra,
                        resume=resume_state(fingerprint, optimizer, scheduler, state, finished=False))
        if stopped_early:
            print(f"time_limit_s={time_limit} reached: stopping after epoch {epoch}", flush=True)
            break
    mark_finished(out / "checkpoints" / "last.pt")
    if best_state is not None:
        model.load_state_dict(best_state)
    save_checkpoint(out / "checkpoints" / "model.pt", model, cfg, state["best_epoch"], extra)
    return {"epochs": epoch, "best_epoch": state["best_epoch"], "final_train_loss": state["train_loss"],
            "train_seconds": round(time.perf_counter() - start, 2),
            "images_per_second": round(state["seen"] / max(state["step_seconds"], 1e-9), 1),
            "stopped_early": stopped_early,
            "resumed_from_epoch": None if resumed is None else resumed["progress"]["epoch"]}


# Keys that do not change what training computes: a resumed run may differ in them.
NOT_HASHED = ("time_limit_s", "bootstrap", "max_test_items", "num_workers", "num_threads", "output_dir")


def config_hash(cfg: dict, extra: dict | None = None) -> str:
    """A fingerprint of the configuration (and the checkpoint extras such as the label map)."""
    import hashlib

    kept = {k: v for k, v in cfg.items() if k not in NOT_HASHED}
    text = json.dumps({"config": kept, "extra": extra or {}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resume_state(fingerprint: str, optimizer, scheduler, progress: dict, finished: bool) -> dict:
    """What `try_resume` needs to continue after the epoch just saved."""
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": __import__("random").getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"config_hash": fingerprint, "finished": finished, "progress": dict(progress),
            "optimizer": optimizer.state_dict(), "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": rng}


def try_resume(folder: Path, fingerprint: str, model, optimizer, scheduler) -> dict | None:
    """Load an unfinished last.pt written for this configuration; None (train afresh) otherwise."""
    path = folder / "last.pt"
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except Exception as err:  # a checkpoint cut short by a crash: start again rather than fail
        print(f"not resuming: {path} cannot be read ({type(err).__name__}); training from epoch 1", flush=True)
        return None
    saved = ckpt.get("resume")
    if not saved or saved.get("finished"):
        return None  # a finished training (or an older engine's checkpoint): this is a new training
    if saved.get("config_hash") != fingerprint:
        print(f"not resuming: {path} was written for another configuration (hash {saved.get('config_hash')}, "
              f"now {fingerprint}); training from epoch 1", flush=True)
        return None
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    restore_rng(saved.get("rng") or {})
    progress, best_state = saved["progress"], None
    if progress["best_epoch"] == progress["epoch"]:
        best_state = copy.deepcopy(model.state_dict())
    elif (folder / "best.pt").exists():
        best = load_checkpoint(folder / "best.pt")
        best_state = best["state_dict"] if best.get("epoch") == progress["best_epoch"] else None
    return {"progress": progress, "best_state": best_state}


def restore_rng(rng: dict) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "numpy" in rng:
        np.random.set_state(rng["numpy"])
    if "python" in rng:
        __import__("random").setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def keep_log_until(log_file: Path, epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (written just before a crash)."""
    if not log_file.exists():
        return
    kept = []
    for line in log_file.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epoch:
                kept.append(line)
        except ValueError:
            continue
    log_file.write_text("".join(line + "\n" for line in kept))


def mark_finished(path: Path) -> None:
    """last.pt of a finished training is not resumed: the next run trains afresh."""
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt.get("resume"):
            ckpt["resume"]["finished"] = True
            _atomic_save(ckpt, path)


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: dict, epoch: int, extra: dict | None = None,
                    resume: dict | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "config": cfg, "epoch": epoch, **(extra or {})}
    if resume is not None:
        payload["resume"] = resume
    _atomic_save(payload, path)


def _atomic_save(obj, path: Path) -> None:
    """Write then rename, so a crash mid-write never leaves a half checkpoint."""
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
