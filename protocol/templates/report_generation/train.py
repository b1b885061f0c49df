"""Train a report generator and evaluate BLEU-4:  python train.py --config config.json

Writes (under output_dir): vocab.json, checkpoints/model.pt (weights + vocabulary),
checkpoints/last.pt (and best.pt with validation), train_log.jsonl, metrics.json
(corpus BLEU-4 with a bootstrap 95% interval, BLEU-1..3, exact-match rate) and
predictions.json (reference and generated report per test image).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from common import output_dir, parse_args, setup_runtime
from engine import bootstrap_ci, finish, fit
from dataloader import augment, build_loaders
from model import build_model
from text import bleu_from_stats, ngram_stats, tokenize


def main() -> None:
    started = time.perf_counter()
    cfg = parse_args("Train an image-to-report model and evaluate BLEU-4 on test.json.")
    device = setup_runtime(cfg)
    out = output_dir(cfg)
    t0 = time.perf_counter()
    data = build_loaders(cfg)
    cache_seconds = time.perf_counter() - t0
    vocab = data["vocab"]
    vocab.save(out / "vocab.json")
    print(f"device {device}; {len(data['train_items'])} train / {len(data['val_items'])} val / "
          f"{len(data['test_items'])} test pairs; vocabulary {len(vocab)} tokens; data ready in {cache_seconds:.1f}s",
          flush=True)

    model = build_model(cfg, len(vocab)).to(device)

    def loss_on(batch, train: bool):
        x = batch["image"].to(device, non_blocking=True)
        if train:
            x = augment(x, cfg)
        tokens = batch["tokens"][:, : int(batch["length"].max())].to(device)
        logits = model(x, tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=0)

    def train_step(batch):
        return loss_on(batch, True), batch["image"].shape[0]

    def val_step(batch):
        return float(loss_on(batch, False)) * batch["image"].shape[0], batch["image"].shape[0]

    result = fit(model, data["train"], cfg, out, train_step, data["val"], val_step,
                 checkpoint_extra={"vocab": vocab.itos})

    model.eval()
    generated = []
    max_tokens = int(cfg.get("max_report_tokens", 60))
    with torch.no_grad():
        for batch in data["test"]:
            ids = model.generate(batch["image"].to(device), max_tokens).cpu()
            generated += [vocab.decode(row) for row in ids]
    references = [it["report"] for it in data["test_items"]]
    stats = np.stack([ngram_stats(tokenize(h), tokenize(r)) for h, r in zip(generated, references)])
    n_boot = int(cfg.get("bootstrap", 1000))
    bleu = {f"bleu{n}": bleu_from_stats(stats, n) for n in (1, 2, 3, 4)}
    exact = [tokenize(h) == tokenize(r) for h, r in zip(generated, references)]
    predictions = [{"id": it["id"], "image": it["image"], "reference": ref, "generated": gen,
                    "sentence_bleu4": round(bleu_from_stats(row, 4, smooth=True), 4), "exact_match": ex}
                   for it, ref, gen, row, ex in zip(data["test_items"], references, generated, stats, exact)]
    for p in predictions[:3]:
        print(f"  reference: {p['reference']!r}\n  generated: {p['generated']!r}", flush=True)
    metrics = {"task": "report_generation", "metric": "bleu4", "value": bleu["bleu4"],
               "ci95": bootstrap_ci(lambda idx: bleu_from_stats(stats[idx], 4), len(stats), n_boot, int(cfg["seed"]))
               if n_boot else None,
               **bleu, "exact_match": float(np.mean(exact)),
               "mean_generated_words": float(np.mean([len(tokenize(g)) for g in generated])),
               "vocab_size": len(vocab),
               "n_train": len(data["train_items"]), "n_val": len(data["val_items"]), "n_test": len(references),
               **result, "cache_seconds": round(cache_seconds, 2), "device": str(device),
               "image_size": cfg["image_size"]}
    finish(out, metrics, predictions, started)


if __name__ == "__main__":
    main()
