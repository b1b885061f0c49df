"""Live progress of a run, without Streamlit: the running stage and, while it trains, epoch, loss and ETA.

The training script writes ``workspace/train_log.jsonl``, one JSON object per epoch (the engine's fields:
``epoch``, ``train_loss``, ``val_loss`` (null without a validation split), ``lr``, ``seconds``,
``images_per_second``, ``peak_rss_mb``); ``workspace/config.json`` holds the planned ``epochs`` and
``time_limit_s``. The workspace is written by agents' scripts: it is read only through
``protocol.untrusted`` (no link followed, size capped), a line that is not a JSON object with sane
numbers is skipped, and the numbers are only shown, never acted on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from medbuilder.protocol.untrusted import UntrustedFileError, open_nofollow

LOG_MAX_BYTES = 8 * 1024 * 1024  # about 40,000 epochs of the engine's lines
CONFIG_MAX_BYTES = 256 * 1024
MAX_EPOCHS = 1_000_000
NUMBER_FIELDS = ("train_loss", "val_loss", "val_metric", "lr", "seconds", "images_per_second", "peak_rss_mb")
NOT_NEGATIVE = ("seconds", "images_per_second", "peak_rss_mb", "lr")


# ---------------------------------------------------------------- reading the workspace


def read_untrusted(root: Path, rel: str, max_bytes: int) -> tuple[str, float] | None:
    """(text, modification time) of root/rel read without following links; None when missing, a link,
    not a plain file, too large or unreadable."""
    try:
        with open_nofollow(root, rel, max_bytes) as handle:
            data = handle.read(max_bytes + 1)
            mtime = os.fstat(handle.fileno()).st_mtime
    except (OSError, UntrustedFileError):
        return None
    if len(data) > max_bytes:
        return None
    return data.decode("utf-8", errors="replace"), mtime


def number(value) -> float | None:
    """A finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def clean_entry(raw) -> dict | None:
    """One epoch line as shown: an integer epoch >= 1 and only the known number fields; None for garbage."""
    if not isinstance(raw, dict):
        return None
    epoch = raw.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= MAX_EPOCHS:
        return None
    entry: dict = {"epoch": epoch}
    for name in NUMBER_FIELDS:
        value = number(raw.get(name))
        if value is not None and not (name in NOT_NEGATIVE and value < 0):
            entry[name] = value
    return entry


def parse_log(text: str) -> list[dict]:
    """The epoch entries of a train_log.jsonl text; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        try:
            entry = clean_entry(json.loads(line))
        except (ValueError, RecursionError):
            continue
        if entry:
            entries.append(entry)
    return entries


def read_log(root: Path, rel: str) -> tuple[list[dict], float] | None:
    """(entries, modification time) of a train_log.jsonl under root, or None when it cannot be read safely."""
    found = read_untrusted(root, rel, LOG_MAX_BYTES)
    return None if found is None else (parse_log(found[0]), found[1])


def read_config(root: Path, rel: str = "workspace/config.json") -> dict:
    """The planned 'epochs' and 'time_limit_s' from a config.json (only sane values; {} otherwise)."""
    found = read_untrusted(root, rel, CONFIG_MAX_BYTES)
    try:
        config = json.loads(found[0]) if found else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(config, dict):
        return {}
    planned = {}
    epochs = config.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and 1 <= epochs <= MAX_EPOCHS:
        planned["epochs"] = epochs
    limit = number(config.get("time_limit_s"))
    if limit is not None and limit > 0:
        planned["time_limit_s"] = limit
    return planned


# ---------------------------------------------------------------- the numbers shown


@dataclass
class Training:
    """Where a training stands, from its log and configuration (for display only)."""

    epoch: int
    epochs: int | None
    train_loss: float | None
    val_loss: float | None
    seconds: float
    mean_epoch_s: float | None
    eta_s: float | None
    limited: bool = False  # the ETA is the time limit's, which ends training before the last epoch
    log: list[dict] = field(default_factory=list)

    @property
    def has_validation(self) -> bool:
        return any("val_loss" in e for e in self.log)

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.epoch / self.epochs) if self.epochs else None

    def text(self) -> str:
        """'epoch 3 of 12 · loss 0.4123 · validation loss 0.5012 · about 1 min 5 s left'."""
        parts = [f"epoch {self.epoch}" + (f" of {self.epochs}" if self.epochs else "")]
        if self.train_loss is not None:
            parts.append(f"loss {self.train_loss:.4g}")
        if self.val_loss is not None:
            parts.append(f"validation loss {self.val_loss:.4g}")
        parts.append(eta_text(self))
        return " · ".join(parts)


def eta_text(training: Training) -> str:
    if training.eta_s is None:
        return "time left unknown (no planned epoch count)" if training.epochs is None else "time left unknown"
    if training.eta_s <= 0:
        return "the last epoch is done"
    left = f"about {duration_text(training.eta_s)} left"
    return left + (" (the time limit ends it)" if training.limited else "")


def summarise(entries: list[dict], planned: dict) -> Training | None:
    """Epoch, last losses, mean seconds per epoch and ETA = remaining epochs x mean seconds so far."""
    if not entries:
        return None
    last = entries[-1]
    seconds = [e["seconds"] for e in entries if "seconds" in e]
    mean = sum(seconds) / len(seconds) if seconds else None
    epochs = planned.get("epochs")
    eta = None
    if epochs is not None and mean is not None:
        eta = max(0, epochs - last["epoch"]) * mean
    spent = sum(seconds)
    limit = planned.get("time_limit_s")
    limited = eta is not None and limit is not None and limit - spent < eta
    if limited:
        eta = max(0.0, limit - spent)
    val = next((e["val_loss"] for e in reversed(entries) if "val_loss" in e), None)
    return Training(epoch=last["epoch"], epochs=epochs, train_loss=last.get("train_loss"), val_loss=val,
                    seconds=spent, mean_epoch_s=mean, eta_s=eta, limited=limited, log=entries)


def training_now(run_root: Path, since: datetime | None = None) -> Training | None:
    """The training going on in the run's workspace; None when there is no log, or (with `since`, the
    stage's start) when the log is older than the stage: an earlier round's."""
    found = read_log(Path(run_root), "workspace/train_log.jsonl")
    if found is None:
        return None
    entries, mtime = found
    if since is not None and mtime < since.timestamp():
        return None
    return summarise(entries, read_config(Path(run_root)))


# ---------------------------------------------------------------- small helpers


def duration_text(seconds: float) -> str:
    """'45 s', '3 min 5 s', '2 h 10 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def elapsed_s(started: str | None, ended: str | None = None, now: datetime | None = None) -> float | None:
    """Seconds from `started` to `ended` (or now)."""
    start = parse_time(started)
    if start is None:
        return None
    end = parse_time(ended) or now or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())
