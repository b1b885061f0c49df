"""Anomaly-detection dataloader: normal-only training images, all test images.

Records are {"image", "label"} (label_dict.json names the classes; normal_label is the
normal one) or {"image", "mask"} (an empty mask means normal). Batches are
{"image": float32 (B, in_channels, *image_size) in [0, 1], "anomalous": int64 (B,)
1 for non-normal records, "id": list of image paths}.

Check a batch (the Module Architect's check):  python dataloader.py --config config.json
"""

from __future__ import annotations

from collections import Counter

import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import (augment_batch, cached_dataset, describe_batch, make_loader, match_channels_transform,
                    parse_args, read_index, split_validation, subsample)
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityd


NORMAL_NAMES = ("normal", "no", "healthy", "negative", "good", "no_finding", "no finding")


def deterministic_transforms(cfg: dict) -> list:
    """Load, channel-first, grey/RGB matching, resize, scale to [0, 1]: cached once."""
    size = list(cfg["image_size"])
    if len(size) != int(cfg["spatial_dims"]):
        raise SystemExit(f"image_size {size} must have spatial_dims={cfg['spatial_dims']} numbers")
    step = 2 ** len(cfg.get("channels") or [16, 32, 64, 128])
    if any(s % step for s in size):
        raise SystemExit(f"image_size {size}: each number must be divisible by {step} (2**len(channels))")
    return [
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        match_channels_transform("image", int(cfg["in_channels"])),
        Resized(keys="image", spatial_size=size, mode="area"),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]


def augment(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Training-time batch augmentation: left-right flips and small rotations."""
    if not cfg.get("augment", False):
        return images
    return augment_batch(images, rotate_degrees=float(cfg.get("rotate_degrees", 5.0)), flip_axes=(0,))


def normal_label(cfg: dict, label_dict: dict[str, int]) -> str:
    if cfg.get("normal_label"):
        if cfg["normal_label"] not in label_dict:
            raise SystemExit(f"normal_label {cfg['normal_label']!r} is not in label_dict.json {sorted(label_dict)}")
        return cfg["normal_label"]
    for name in label_dict:
        if name.lower() in NORMAL_NAMES:
            return name
    return min(label_dict, key=label_dict.get)


def labels_from_masks(records: list[dict]) -> list[dict]:
    """{"image", "mask"} records: label 'anomalous' when the mask has any foreground, else 'normal'."""
    if all("label" in r for r in records):
        return records
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True)
    return [r if "label" in r else {**r, "label": "anomalous" if bool((load(r["mask"]) > 0).any()) else "normal"}
            for r in records]


def to_items(records: list[dict], normal: str) -> list[dict]:
    return [{"image": r["image"], "anomalous": int(r["label"] != normal), "label": r["label"],
             "id": r.get("id", r["image"]), "group": str(r.get("group") or "")} for r in records]


def split_records(cfg: dict) -> dict:
    train, test, label_dict = read_index(cfg["index_dir"])
    train, test = labels_from_masks(train), labels_from_masks(test)
    if not label_dict:
        label_dict = {name: i for i, name in enumerate(sorted({r["label"] for r in train + test}))}
    normal = normal_label(cfg, label_dict)
    seed = int(cfg["seed"])
    train_normal = [r for r in train if r["label"] == normal]
    if not train_normal:
        raise SystemExit(f"no training record has the normal label {normal!r}: set normal_label")
    train_normal = subsample(train_normal, cfg.get("max_train_items"), seed, key=None)
    test = subsample(test, cfg.get("max_test_items"), seed)
    train_normal, val = split_validation(train_normal, float(cfg.get("val_fraction", 0.0)), seed, key=None)
    return {"train": to_items(train_normal, normal), "val": to_items(val, normal), "test": to_items(test, normal),
            "normal_label": normal, "n_train_records_skipped": len(train) - len(train_normal) - len(val)}


def build_loaders(cfg: dict) -> dict:
    parts = split_records(cfg)
    base = Compose(deterministic_transforms(cfg))
    loaders = {"train": make_loader(cached_dataset(parts["train"], base, cfg, "train"), cfg, shuffle=True),
               "val": None}
    if parts["val"]:
        loaders["val"] = make_loader(cached_dataset(parts["val"], base, cfg, "val"), cfg, shuffle=False)
    loaders["test"] = make_loader(cached_dataset(parts["test"], base, cfg, "test"), cfg, shuffle=False)
    return {**loaders, **{f"{k}_items": parts[k] for k in ("train", "val", "test")},
            "normal_label": parts["normal_label"]}


def main() -> None:
    cfg = parse_args("Load one anomaly-detection batch and print its shapes and dtypes.")
    torch.set_num_threads(max(1, int(cfg.get("num_threads") or 1)))
    cfg = {**cfg, "max_train_items": min(int(cfg.get("max_train_items") or 64), 64),
           "max_test_items": min(int(cfg.get("max_test_items") or 32), 32)}
    loaders = build_loaders(cfg)
    print(f"normal label: {loaders['normal_label']!r} (training uses normal images only)")
    for split in ("train", "val", "test"):
        items = loaders[f"{split}_items"]
        print(f"{split}: {len(items)} items (checked subset), labels {dict(Counter(it['label'] for it in items))}")
    for split in ("train", "test"):
        print(f"{split} batch:\n{describe_batch(next(iter(loaders[split])))}")
    print("dataloader OK")


if __name__ == "__main__":
    main()
