"""Train an autoencoder on normal images and score test images:  python train.py --config config.json

Writes (under output_dir): checkpoints/model.pt, checkpoints/last.pt (and best.pt with
validation), train_log.jsonl, metrics.json (AUROC of the anomaly score, anomalous
classes positive, with a bootstrap 95% interval; AUROC of each score kind) and
predictions.json (one entry per test image with its score).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from common import output_dir, parse_args, setup_runtime
from engine import auroc, bootstrap_ci, finish, fit
from dataloader import augment, build_loaders
from model import anomaly_scores, build_model

SCORE_KINDS = ("mse", "mae", "top_mse")


def main() -> None:
    started = time.perf_counter()
    cfg = parse_args("Train an autoencoder on normal images and evaluate anomaly scores on test.json.")
    device = setup_runtime(cfg)
    out = output_dir(cfg)
    t0 = time.perf_counter()
    data = build_loaders(cfg)
    cache_seconds = time.perf_counter() - t0
    n_anom = sum(it["anomalous"] for it in data["test_items"])
    print(f"device {device}; normal label {data['normal_label']!r}; {len(data['train_items'])} normal train / "
          f"{len(data['val_items'])} normal val / {len(data['test_items'])} test images ({n_anom} anomalous); "
          f"data ready in {cache_seconds:.1f}s", flush=True)

    model = build_model(cfg).to(device)

    def train_step(batch):
        x = augment(batch["image"].to(device, non_blocking=True), cfg)
        return F.mse_loss(model(x), x), x.shape[0]

    def val_step(batch):
        x = batch["image"].to(device)
        return float(F.mse_loss(model(x), x)) * x.shape[0], x.shape[0]

    result = fit(model, data["train"], cfg, out, train_step, data["val"], val_step,
                 checkpoint_extra={"normal_label": data["normal_label"]})

    model.eval()
    scores = {k: [] for k in SCORE_KINDS}
    with torch.no_grad():
        for batch in data["test"]:
            x = batch["image"].to(device)
            recon = model(x)
            for k in SCORE_KINDS:
                scores[k].append(anomaly_scores(x, recon, k).cpu())
    scores = {k: torch.cat(v).numpy() for k, v in scores.items()}
    how = cfg.get("score", "mae")
    y = np.array([it["anomalous"] for it in data["test_items"]])
    s = scores[how]
    n_boot = int(cfg.get("bootstrap", 1000))
    groups = np.array([it["group"] for it in data["test_items"]])
    subgroups = {g: {"n": int((groups == g).sum()), "value": auroc(y[groups == g], s[groups == g])}
                 for g in sorted(set(groups)) if g}
    predictions = [{"id": it["id"], "image": it["image"], "label": it["label"], "group": it["group"] or None,
                    "anomalous": bool(it["anomalous"]),
                    "score": float(v), **{f"score_{k}": float(scores[k][i]) for k in SCORE_KINDS}}
                   for i, (it, v) in enumerate(zip(data["test_items"], s))]
    metrics = {"task": "anomaly_detection", "metric": "auroc", "value": auroc(y, s),
               "ci95": bootstrap_ci(lambda idx: auroc(y[idx], s[idx]), len(y), n_boot, int(cfg["seed"]))
               if n_boot else None,
               "subgroups": subgroups, "score": how, "auroc_by_score": {k: auroc(y, scores[k]) for k in SCORE_KINDS},
               "normal_label": data["normal_label"], "n_test_anomalous": int(y.sum()),
               "n_test_normal": int((1 - y).sum()),
               "n_train": len(data["train_items"]), "n_val": len(data["val_items"]), "n_test": len(y),
               **result, "cache_seconds": round(cache_seconds, 2), "device": str(device),
               "image_size": cfg["image_size"]}
    finish(out, metrics, predictions, started)


if __name__ == "__main__":
    main()
