"""Report-generation dataloader: index records {"image", "report"} -> image batches with token ids.

The vocabulary is built from the training reports (text.Vocab). Batches are
{"image": float32 (B, in_channels, *image_size) in [0, 1], "tokens": int64 (B, max_report_tokens + 2)
<bos> words <eos> padded with 0, "length": int64 (B,), "report": list of texts, "id": list}.

Check a batch (the Module Architect's check):  python dataloader.py --config config.json
"""

from __future__ import annotations

import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import (augment_batch, cached_dataset, describe_batch, make_loader, match_channels_transform,
                    parse_args, read_index, split_validation, subsample)
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityd

from text import Vocab


def deterministic_transforms(cfg: dict) -> list:
    size = list(cfg["image_size"])
    if len(size) != 2:
        raise SystemExit(f"image_size {size} must have 2 numbers (report generation is 2D)")
    return [
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        match_channels_transform("image", int(cfg["in_channels"])),
        Resized(keys="image", spatial_size=size, mode="area"),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]


def augment(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Small rotations and zoom only: flips would contradict 'left'/'right' in the reports."""
    if not cfg.get("augment", True):
        return images
    return augment_batch(images, rotate_degrees=float(cfg.get("rotate_degrees", 5.0)), flip_axes=(), zoom=0.05)


def to_items(records: list[dict], vocab: Vocab, max_tokens: int) -> list[dict]:
    items = []
    for r in records:
        ids = vocab.encode(r["report"], max_tokens)
        tokens = torch.zeros(max_tokens + 2, dtype=torch.long)
        tokens[: len(ids)] = torch.tensor(ids)
        items.append({"image": r["image"], "tokens": tokens, "length": len(ids), "report": r["report"],
                      "id": r.get("id", r["image"])})
    return items


def build_loaders(cfg: dict) -> dict:
    train, test, _ = read_index(cfg["index_dir"])
    seed = int(cfg["seed"])
    train = subsample(train, cfg.get("max_train_items"), seed, key=None)
    test = subsample(test, cfg.get("max_test_items"), seed, key=None)
    train, val = split_validation(train, float(cfg.get("val_fraction", 0.0)), seed, key=None)
    vocab = Vocab.build([r["report"] for r in train], int(cfg.get("vocab_min_freq", 1)))
    max_tokens = int(cfg.get("max_report_tokens", 60))
    parts = {k: to_items(v, vocab, max_tokens) for k, v in (("train", train), ("val", val), ("test", test))}
    base = Compose(deterministic_transforms(cfg))
    loaders = {"train": make_loader(cached_dataset(parts["train"], base, cfg, "train"), cfg, shuffle=True),
               "val": None}
    if parts["val"]:
        loaders["val"] = make_loader(cached_dataset(parts["val"], base, cfg, "val"), cfg, shuffle=False)
    loaders["test"] = make_loader(cached_dataset(parts["test"], base, cfg, "test"), cfg, shuffle=False)
    return {**loaders, **{f"{k}_items": v for k, v in parts.items()}, "vocab": vocab}


def main() -> None:
    cfg = parse_args("Load one report-generation batch and print its shapes and dtypes.")
    torch.set_num_threads(max(1, int(cfg.get("num_threads") or 1)))
    cfg = {**cfg, "max_train_items": min(int(cfg.get("max_train_items") or 64), 64),
           "max_test_items": min(int(cfg.get("max_test_items") or 16), 16)}
    loaders = build_loaders(cfg)
    vocab = loaders["vocab"]
    print(f"vocabulary (from the checked training subset): {len(vocab)} tokens, e.g. {vocab.itos[4:14]}")
    for split in ("train", "test"):
        batch = next(iter(loaders[split]))
        print(f"{split} batch:\n{describe_batch(batch)}")
        print(f"  first report: {batch['report'][0]!r} -> {vocab.decode(batch['tokens'][0])!r}")
    print("dataloader OK")


if __name__ == "__main__":
    main()
