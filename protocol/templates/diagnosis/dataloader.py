"""Diagnosis dataloader: index records {"image", "label"} -> MONAI datasets and loaders.

Batches are {"image": float32 (B, in_channels, *image_size) scaled to [0, 1],
"label": int64 (B,) class indices from label_dict.json, "id": list of image paths}.
The deterministic chain (load, channels, resize, scale) is cached once (cache key);
augment() then flips/rotates each training batch.

Check a batch (the Module Architect's check):  python dataloader.py --config config.json
"""

from __future__ import annotations

from collections import Counter

import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import (augment_batch, cached_dataset, describe_batch, make_loader, match_channels_transform,
                    parse_args, read_index, split_validation, subsample)
from monai.transforms import (Compose, CropForegroundd, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized,
                              ScaleIntensityd, SpatialPadd)



FOREGROUND_LEVEL = 0.05  # after scaling to [0, 1]: darker rows and columns at the edges are border


def deterministic_transforms(cfg: dict) -> list:
    """Load, channel-first, grey/RGB matching, scale to [0, 1], crop and resize: cached once."""
    size = list(cfg["image_size"])
    if len(size) != int(cfg["spatial_dims"]):
        raise SystemExit(f"image_size {size} must have spatial_dims={cfg['spatial_dims']} numbers")
    return [
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        match_channels_transform("image", int(cfg["in_channels"])),
        ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
        *crop_and_resize(cfg, size),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ]


def _foreground(x):
    return x > FOREGROUND_LEVEL


def crop_and_resize(cfg: dict, size: list[int]) -> list:
    """Optionally crop dark borders, then resize: keeping the aspect ratio (longest side, zero padding)
    or stretching to image_size. Cropping and keeping the aspect stop the frame's size and black
    borders from standing in for the label."""
    steps = []
    if cfg.get("crop_foreground", True):
        steps.append(CropForegroundd(keys="image", source_key="image", select_fn=_foreground, margin=2,
                                     allow_smaller=True))
    if cfg.get("keep_aspect", True):
        steps += [Resized(keys="image", spatial_size=max(size), size_mode="longest", mode="area"),
                  SpatialPadd(keys="image", spatial_size=size)]
    else:
        steps.append(Resized(keys="image", spatial_size=size, mode="area"))
    return steps


def augment(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Training-time augmentation of a batch (called in train.py's train_step): random
    left-right flips, rotations up to rotate_degrees, zoom, and a random gamma, drawn per
    image. Done on the batch, not per item, because per-image random transforms dominate
    CPU time here."""
    if not cfg.get("augment", True):
        return images
    out = augment_batch(images, rotate_degrees=float(cfg.get("rotate_degrees", 10.0)), flip_axes=(0,),
                        zoom=float(cfg.get("zoom", 0.0)))
    return random_gamma(out, float(cfg.get("gamma", 0.0)))


def random_gamma(images: torch.Tensor, log_range: float) -> torch.Tensor:
    """x ** g per image, log g uniform in [-log_range, log_range]: contrast changes like those between
    MR sequences and scanners (images are in [0, 1])."""
    if log_range <= 0:
        return images
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    g = torch.exp((torch.rand(shape, device=images.device) * 2 - 1) * log_range)
    return images.clamp(min=0) ** g


def to_items(records: list[dict], label_dict: dict[str, int]) -> list[dict]:
    """Index records -> dicts MONAI loads: image path, integer label, id."""
    items = []
    for i, r in enumerate(records):
        if r["label"] not in label_dict:
            raise SystemExit(f"record {i} has label {r['label']!r}, not in label_dict.json {sorted(label_dict)}")
        items.append({"image": r["image"], "label": int(label_dict[r["label"]]), "id": r.get("id", r["image"]),
                      "group": str(r.get("group") or "")})
    return items


def split_records(cfg: dict) -> dict:
    """train / val / test records and label_dict, after max_*_items and val_fraction."""
    train, test, label_dict = read_index(cfg["index_dir"])
    if not label_dict:
        label_dict = {name: i for i, name in enumerate(sorted({r["label"] for r in train}))}
    if len(label_dict) != int(cfg["num_classes"]):
        raise SystemExit(f"num_classes={cfg['num_classes']} but label_dict.json has {len(label_dict)} classes")
    seed = int(cfg["seed"])
    train = subsample(train, cfg.get("max_train_items"), seed)
    test = subsample(test, cfg.get("max_test_items"), seed)
    train, val = split_validation(train, float(cfg.get("val_fraction", 0.0)), seed)
    return {"train": to_items(train, label_dict), "val": to_items(val, label_dict),
            "test": to_items(test, label_dict), "label_dict": label_dict}


def class_counts(items: list[dict], num_classes: int) -> list[int]:
    counts = Counter(it["label"] for it in items)
    return [counts.get(c, 0) for c in range(num_classes)]


def build_loaders(cfg: dict) -> dict:
    """{"train", "val" (or None), "test"} loaders plus the item lists and label_dict."""
    parts = split_records(cfg)
    base = deterministic_transforms(cfg)
    train_ds = cached_dataset(parts["train"], Compose(base), cfg, "train")
    sampler = None
    if cfg.get("balanced_sampling"):
        counts = class_counts(parts["train"], int(cfg["num_classes"]))
        weights = [1.0 / max(1, counts[it["label"]]) for it in parts["train"]]
        sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=len(weights), replacement=True)
    loaders = {"train": make_loader(train_ds, cfg, shuffle=True, sampler=sampler), "val": None}
    if parts["val"]:
        loaders["val"] = make_loader(cached_dataset(parts["val"], Compose(base), cfg, "val"), cfg, shuffle=False)
    loaders["test"] = make_loader(cached_dataset(parts["test"], Compose(base), cfg, "test"), cfg, shuffle=False)
    return {**loaders, **{f"{k}_items": parts[k] for k in ("train", "val", "test")},
            "label_dict": parts["label_dict"]}


def main() -> None:
    cfg = parse_args("Load one diagnosis batch and print its shapes and dtypes.")
    torch.set_num_threads(max(1, int(cfg.get("num_threads") or 1)))
    cfg = {**cfg, "max_train_items": min(int(cfg.get("max_train_items") or 64), 64),
           "max_test_items": min(int(cfg.get("max_test_items") or 32), 32)}
    loaders = build_loaders(cfg)
    n = int(cfg["num_classes"])
    print(f"label_dict: {loaders['label_dict']}")
    for split in ("train", "val", "test"):
        items = loaders[f"{split}_items"]
        print(f"{split}: {len(items)} items (checked subset), class counts {class_counts(items, n)}")
    for split in ("train", "test"):
        batch = next(iter(loaders[split]))
        print(f"{split} batch:\n{describe_batch(batch)}")
    image = next(iter(loaders["train"]))["image"]
    expected = (int(cfg["in_channels"]), *cfg["image_size"])
    if tuple(image.shape[1:]) != tuple(expected) or image.dtype != torch.float32:
        raise SystemExit(f"unexpected image batch {tuple(image.shape)} {image.dtype}; expected (B, {expected}) float32")
    print("dataloader OK")


if __name__ == "__main__":
    main()
