"""Train and evaluate a diagnosis model:  python train.py --config config.json

Writes (under output_dir): checkpoints/model.pt (weights used for the test
evaluation: best validation loss, or the last epoch), checkpoints/last.pt,
checkpoints/best.pt (with validation), train_log.jsonl (one line per epoch),
metrics.json (AUROC with a bootstrap 95% interval, accuracy, sensitivity,
specificity, ..., and the refinement strategies applied) and predictions.json
(one entry per test image).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from torch import nn

from common import output_dir, parse_args, setup_runtime
from engine import auroc, bootstrap_ci, finish, fit
from dataloader import augment, build_loaders, class_counts
from model import build_model


def loss_weights(cfg: dict, counts: list[int]) -> torch.Tensor | None:
    """class_weights: null, 'balanced' (inverse frequency, mean 1) or an explicit list."""
    cw = cfg.get("class_weights")
    if cw is None:
        return None
    if cw == "balanced":
        inv = np.array([1.0 / max(1, c) for c in counts])
        return torch.tensor(inv / inv.mean(), dtype=torch.float32)
    if isinstance(cw, list) and len(cw) == len(counts):
        return torch.tensor(cw, dtype=torch.float32)
    raise SystemExit(f"class_weights must be null, 'balanced' or {len(counts)} numbers, not {cw!r}")


@torch.no_grad()
def predict(model: nn.Module, loader, device) -> np.ndarray:
    model.eval()
    probs = [torch.softmax(model(b["image"].to(device)).float(), dim=1).cpu() for b in loader]
    return torch.cat(probs).numpy()


def evaluate(probs: np.ndarray, labels: np.ndarray, positive: int | None, n_boot: int, seed: int,
             tables: bool = True) -> dict:
    """AUROC (binary: positive class; else macro one-vs-rest) with bootstrap CI, plus accuracy etc.

    tables=False leaves out the balanced accuracy and the confusion matrix: a bootstrap resample needs only
    the rest, and scikit-learn's input checks cost about 2 ms a call."""
    n_classes = probs.shape[1]

    def auc(idx: np.ndarray) -> float:
        y, p = labels[idx], probs[idx]
        if positive is not None:
            return auroc(y == positive, p[:, positive])
        per_class = [auroc(y == c, p[:, c]) for c in range(n_classes)]
        per_class = [a for a in per_class if not np.isnan(a)]
        return float(np.mean(per_class)) if per_class else float("nan")

    all_idx = np.arange(len(labels))
    pred = probs.argmax(1)
    out = {"value": auc(all_idx), "ci95": bootstrap_ci(auc, len(labels), n_boot, seed) if n_boot else None,
           "accuracy": float((pred == labels).mean())}
    if tables:
        out["balanced_accuracy"] = float(balanced_accuracy_score(labels, pred))
        out["confusion_matrix"] = confusion_matrix(labels, pred, labels=list(range(n_classes))).tolist()
    if positive is not None:
        pos, neg = labels == positive, labels != positive
        out["sensitivity"] = float((pred[pos] == positive).mean()) if pos.any() else None
        out["specificity"] = float((pred[neg] != positive).mean()) if neg.any() else None
    return out


def main() -> None:
    started = time.perf_counter()
    cfg = parse_args("Train a diagnosis classifier and evaluate it on test.json.")
    device = setup_runtime(cfg)
    out = output_dir(cfg)
    t0 = time.perf_counter()
    data = build_loaders(cfg)
    cache_seconds = time.perf_counter() - t0
    label_dict = data["label_dict"]
    names = {i: name for name, i in label_dict.items()}
    n_classes = int(cfg["num_classes"])
    counts = class_counts(data["train_items"], n_classes)
    print(f"device {device}; {len(data['train_items'])} train / {len(data['val_items'])} val / "
          f"{len(data['test_items'])} test images; classes {label_dict}; train counts {counts}; "
          f"data ready in {cache_seconds:.1f}s", flush=True)

    model = build_model(cfg).to(device)
    weights = loss_weights(cfg, counts)
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))

    def train_step(batch):
        x, y = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
        return criterion(model(augment(x, cfg)), y), len(y)

    def val_step(batch):
        x, y = batch["image"].to(device), batch["label"].to(device)
        return float(criterion(model(x), y)) * len(y), len(y)

    result = fit(model, data["train"], cfg, out, train_step, data["val"], val_step,
                 checkpoint_extra={"label_dict": label_dict})

    probs = predict(model, data["test"], device)
    labels = np.array([it["label"] for it in data["test_items"]])
    positive = None
    if n_classes == 2:
        positive = label_dict[cfg["positive_label"]] if cfg.get("positive_label") else 1
    scores = evaluate(probs, labels, positive, int(cfg.get("bootstrap", 1000)), int(cfg["seed"]))
    groups = np.array([it["group"] for it in data["test_items"]])
    subgroups = {g: {"n": int((groups == g).sum()),
                     **{k: v for k, v in evaluate(probs[groups == g], labels[groups == g], positive, 0, 0).items()
                        if k in ("value", "accuracy", "sensitivity", "specificity")}}
                 for g in sorted(set(groups)) if g}
    predictions = [{"id": it["id"], "image": it["image"], "label": names[it["label"]], "group": it["group"] or None,
                    **({"confounder": bool(it["confounder"])} if it.get("confounder") is not None else {}),
                    "prediction": names[int(p.argmax())],
                    "score": float(p[positive]) if positive is not None else float(p.max()),
                    "probabilities": {names[c]: float(p[c]) for c in range(n_classes)}}
                   for it, p in zip(data["test_items"], probs)]
    metrics = {"task": "diagnosis", "metric": "auroc", **scores,
               "positive_label": names.get(positive) if positive is not None else None,
               "subgroups": subgroups,
               "n_train": len(data["train_items"]), "n_val": len(data["val_items"]), "n_test": len(labels),
               **result, "cache_seconds": round(cache_seconds, 2), "device": str(device),
               "model": cfg.get("model"), "image_size": cfg["image_size"], "label_dict": label_dict,
               "strategies": data["strategies"]}
    finish(out, metrics, predictions, started)


if __name__ == "__main__":
    main()
