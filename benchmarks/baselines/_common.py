"""What the standard-recipe baselines share: arguments, the data facts they take from a build, and an
epoch loop that stops within a wall-clock budget.

A baseline is what a practitioner would write without medbuilder: MONAI's usual recipe for the task,
with its own model, size, optimiser and augmentation. From the build it takes only facts about the
data (channels, classes, the positive or normal label, the subset sizes of a quick run) and the
index files; it is given the build's end-to-end seconds and trains batch after batch while the next one and the test
predictions still fit (an epoch longer than the budget is cut short; at least one batch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


REFERENCES = Path(__file__).resolve().parent.parent / "references"
sys.path.append(str(REFERENCES))  # after this folder: its diagnosis.py is not the reference's

from _shared import first_n, read_split, seed_and_threads  # noqa: E402  (the references' helpers)

MAX_EPOCHS = 200  # a schedule's usual ceiling; tiny quick subsets would otherwise run thousands
DATA_FACTS = ("spatial_dims", "in_channels", "num_classes", "positive_label", "normal_label", "max_train_items",
              "max_test_items", "seed", "orientation", "spacing", "intensity", "intensity_window")


def parse(description: str) -> tuple[dict, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True,
                        help="a build's rounds/<k>/config.json (only its data facts are read)")
    parser.add_argument("--index-dir", required=True, help="folder with train.json, test.json (label_dict.json)")
    parser.add_argument("--time-budget", type=float, required=True, help="wall seconds for the whole script")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's num_threads)")
    args = parser.parse_args()
    index = Path(args.index_dir)
    missing = [name for name in ("train.json", "test.json") if not (index / name).is_file()]
    if missing:
        sys.exit(f"error: {index} has no {' or '.join(missing)}: pass the build's workspace/index folder")
    cfg = json.loads(Path(args.config).read_text())
    facts = {k: cfg[k] for k in DATA_FACTS if k in cfg}
    seed_and_threads(int(facts.get("seed", 0)), int(args.threads or cfg.get("num_threads") or 2))
    return facts, args


def split(args: argparse.Namespace, facts: dict, key: str | None = "label") -> tuple[list, list, dict]:
    """The index's train and test records, cut to a quick build's subset sizes with the same seeded choice."""
    train, test, labels = read_split(args.index_dir)
    seed = int(facts.get("seed", 0))
    return (first_n(train, facts.get("max_train_items"), seed, key),
            first_n(test, facts.get("max_test_items"), seed, key), labels)


class Budget:
    """The script's clock: batches while the next one and the test predictions still fit the budget."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), float(seconds)
        self.batches, self.train_seconds, self.seen, self.per_epoch = 0, 0.0, 0, 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def train(self, batches, step, n_test: int, max_epochs: int = MAX_EPOCHS) -> None:
        """`batches()` gives one epoch's batches (a list); `step(batch)` trains on one and returns its image count
        (its augmentation counts as training time). At least one batch, then while a batch more, the test pass
        (estimated at a third of a training image's seconds per test image) and a 2% margin fit the budget: an
        epoch too long is cut short."""
        for epoch in range(max_epochs):
            order = batches()
            self.per_epoch = max(1, len(order))
            for batch in order:
                t = time.perf_counter()
                images = step(batch)
                spent = time.perf_counter() - t
                self.batches += 1
                self.train_seconds += spent
                self.seen += images
                test_estimate = n_test * self.train_seconds / self.seen / 3
                if self.elapsed() + spent + test_estimate > 0.98 * self.seconds:
                    print(f"budget reached in epoch {epoch + 1}", flush=True)
                    return
            print(f"epoch {epoch + 1} done at {self.elapsed():.1f} s", flush=True)

    def emit(self, metric: str, value: float, recipe: str, n_train: int, n_test: int, **extra) -> None:
        seconds = self.elapsed()
        print(json.dumps({"metric": metric, "value": float(value), "seconds": round(seconds, 2),
                          "budget_seconds": self.seconds, "over_budget": seconds > self.seconds,
                          "epochs": round(self.batches / self.per_epoch, 2), "batches": self.batches,
                          "train_seconds": round(self.train_seconds, 2),
                          "images_per_second": round(self.seen / max(self.train_seconds, 1e-9), 1),
                          "n_train": n_train, "n_test": n_test, "recipe": recipe, **extra}), flush=True)


def reference_module(name: str):
    """A reference script's module, loaded from its file (its name is a baseline's too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"reference_{name}", REFERENCES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive_index(names: list[str], facts: dict) -> int:
    """The class scored as positive: the config's positive label, else "yes", else the last class."""
    label = facts.get("positive_label")
    return names.index(label) if label in names else (names.index("yes") if "yes" in names else len(names) - 1)


def class_names(train: list[dict], labels: dict) -> list[str]:
    return sorted(labels, key=labels.get) if labels else sorted({r["label"] for r in train})
