"""Diagnosis dataloader: index records {"image", "label"} -> MONAI datasets and loaders.

Batches are {"image": float32 (B, in_channels, *image_size) scaled to [0, 1],
"label": int64 (B,) class indices from label_dict.json, "id": list of image paths}.
The deterministic chain (load, channels, resize, scale) is cached once (cache key);
augment() then flips/rotates each training batch.

Refinement strategies against a confounder (keys roi, mask_confounder,
counterfactual_aug, group_balanced; see README.md) use the records' optional
"confounder", "confounder_mask" and "counterfactual" fields.

Check a batch (the Module Architect's check):  python dataloader.py --config config.json
"""

from __future__ import annotations

from collections import Counter

import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import (augment_batch, cached_dataset, describe_batch, make_loader, match_channels_transform,
                    parse_args, preprocessing_inputs, read_index, split_validation, subsample)
try:  # bound now, while this folder is on sys.path (predict.py imports its siblings only then)
    import confounders
except ImportError:  # an older workspace without it: fine while roi and mask_confounder are off
    confounders = None
from monai.transforms import (Compose, CropForegroundd, DeleteItemsd, EnsureChannelFirstd, EnsureTyped, LoadImaged,
                              Resized, ScaleIntensityd, SpatialPadd)



# the keys deterministic_transforms reads: medbuilder's store keeps one preprocessed copy per their values
CACHE_KEYS = ("image_size", "spatial_dims", "in_channels", "crop_foreground", "keep_aspect", "roi", "roi_crop",
              "mask_confounder", "mask_dilate_px")
FOREGROUND_LEVEL = 0.05  # after scaling to [0, 1]: darker rows and columns at the edges are border
# optional record fields an item carries through to_items; the loading chain drops them before batching
CONFOUNDER_FIELDS = ("confounder", "confounder_mask", "counterfactual")


def deterministic_transforms(cfg: dict, masks: bool = False) -> list:
    """Load, channel-first, grey/RGB matching, scale to [0, 1], crop and resize: cached once.

    roi (keep only the head region) is preprocessing and runs everywhere, inference included;
    masks=True (training images) adds the inpainting of each item's confounder_mask when
    mask_confounder is on.
    """
    size = list(cfg["image_size"])
    if len(size) != int(cfg["spatial_dims"]):
        raise SystemExit(f"image_size {size} must have spatial_dims={cfg['spatial_dims']} numbers")
    steps = [
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        match_channels_transform("image", int(cfg["in_channels"])),
    ]
    if masks and cfg.get("mask_confounder"):
        steps += [LoadImaged(keys="confounder_mask", image_only=True, allow_missing_keys=True),
                  EnsureChannelFirstd(keys="confounder_mask", allow_missing_keys=True),
                  _confounders().InpaintMaskd("image", "confounder_mask", int(cfg.get("mask_dilate_px", 3)))]
    steps.append(ScaleIntensityd(keys="image", minv=0.0, maxv=1.0))
    if cfg.get("roi"):
        steps.append(_confounders().KeepRoid("image", str(cfg["roi"]), crop=bool(cfg.get("roi_crop"))))
    return [
        *steps,
        *crop_and_resize(cfg, size),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        DeleteItemsd(keys=list(CONFOUNDER_FIELDS)),
    ]


def _confounders():
    """confounders.py (copied from the template's _common/ folder); only roi and mask_confounder need it."""
    if confounders is None:
        raise SystemExit("roi and mask_confounder need confounders.py beside dataloader.py: copy it from the "
                         "template's _common/ folder (with common.py and engine.py)")
    return confounders


def _foreground(x):
    return x > FOREGROUND_LEVEL


def crop_and_resize(cfg: dict, size: list[int]) -> list:
    """Optionally crop dark borders, then resize: keeping the aspect ratio (longest side, zero padding)
    or stretching to image_size. Cropping and keeping the aspect stop the frame's size and black
    borders from standing in for the label."""
    steps = []
    if cfg.get("crop_foreground", True):
        steps.append(CropForegroundd(keys="image", source_key="image", select_fn=_foreground, margin=2,
                                     allow_smaller=True, start_coord_key=None, end_coord_key=None))
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
                      "group": str(r.get("group") or ""),
                      **{k: r[k] for k in CONFOUNDER_FIELDS if r.get(k) is not None}})
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


def cell(item: dict) -> tuple[int, bool | None]:
    """An item's (label, confounder) cell; None where the record does not say."""
    c = item.get("confounder")
    return item["label"], None if c is None else bool(c)


def cell_name(key: tuple[int, bool | None], names: dict[int, str]) -> str:
    label, c = key
    return f"{names.get(label, label)}/" + {True: "confounder", False: "no-confounder", None: "unknown"}[c]


def sample_weights(cfg: dict, items: list[dict], label_dict: dict[str, int]) -> list[float] | None:
    """Training sampler weights: group_balanced (each (label, confounder) cell the same total weight),
    else balanced_sampling (each class the same), else None (plain shuffling)."""
    if cfg.get("group_balanced"):
        counts = Counter(cell(it) for it in items)
        names = {i: name for name, i in label_dict.items()}
        per_item = {k: 1.0 / (len(counts) * n) for k, n in counts.items()}
        table = ", ".join(f"{cell_name(k, names)} {counts[k]} x {per_item[k]:.4f}"
                          for k in sorted(counts, key=lambda k: (k[0], str(k[1]))))
        note = " (balanced_sampling is superseded)" if cfg.get("balanced_sampling") else ""
        print(f"group_balanced: {len(counts)} (label, confounder) cells, items x weight: {table}{note}", flush=True)
        return [per_item[cell(it)] for it in items]
    if cfg.get("balanced_sampling"):
        counts = class_counts(items, int(cfg["num_classes"]))
        return [1.0 / max(1, counts[it["label"]]) for it in items]
    return None


class CounterfactualSwap(torch.utils.data.Dataset):
    """counterfactual_aug: item i is replaced by its cached twin (same label) with probability p, drawn
    anew each time it is read (torch's RNG: seeded in the main process, per worker in workers)."""

    def __init__(self, base, twins, twin_of: dict[int, int], p: float):
        self.base, self.twins, self.twin_of, self.p = base, twins, twin_of, float(p)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        j = self.twin_of.get(int(i))
        if j is not None and float(torch.rand(())) < self.p:
            return self.twins[j]
        return self.base[i]


def with_counterfactuals(train_ds, items: list[dict], chain, cfg: dict):
    """Wrap the training dataset for counterfactual_aug; the twins go through the same cached chain."""
    p = float(cfg.get("counterfactual_aug") or 0.0)
    if p <= 0:
        return train_ds
    having = [i for i, it in enumerate(items) if it.get("counterfactual")]
    print(f"counterfactual_aug={p:g}: {len(having)} of {len(items)} training items have a counterfactual twin "
          f"(each is swapped for it with probability {p:g} per epoch; the others are untouched)", flush=True)
    if not having:
        print("warning: no training record has a 'counterfactual' path: counterfactual_aug changes nothing", flush=True)
        return train_ds
    twin_ds = cached_dataset(twin_items(items), chain, cfg, "train_counterfactual", drop=CONFOUNDER_FIELDS)
    return CounterfactualSwap(train_ds, twin_ds, {i: j for j, i in enumerate(having)}, p)


def strategies(cfg: dict, items: list[dict], label_dict: dict[str, int]) -> dict:
    """Which refinement strategies this run applies, with the training counts they act on (metrics.json)."""
    names = {i: name for name, i in label_dict.items()}
    active = [k for k in ("roi", "mask_confounder", "counterfactual_aug", "group_balanced") if cfg.get(k)]
    with_mask = sum(1 for it in items if it.get("confounder_mask"))
    if cfg.get("mask_confounder"):
        print(f"mask_confounder: inpainting the confounder in {with_mask} of {len(items)} training images "
              f"(the others, validation and test images are untouched)", flush=True)
    return {"active": active, "roi": cfg.get("roi"), "roi_crop": bool(cfg.get("roi_crop")),
            "mask_confounder": bool(cfg.get("mask_confounder")),
            "counterfactual_aug": float(cfg.get("counterfactual_aug") or 0.0),
            "group_balanced": bool(cfg.get("group_balanced")),
            "train_cells": {cell_name(k, names): n for k, n in sorted(Counter(cell(it) for it in items).items(),
                                                                       key=lambda kv: (kv[0][0], str(kv[0][1])))},
            "train_with_counterfactual": sum(1 for it in items if it.get("counterfactual")),
            "train_with_mask": with_mask}


def twin_items(items: list[dict]) -> list[dict]:
    """counterfactual_aug's twins: each item that has one, with the twin's image."""
    return [{**{k: v for k, v in it.items() if k != "counterfactual"}, "image": it["counterfactual"]}
            for it in items if it.get("counterfactual")]


def preprocessing_plan(cfg: dict) -> dict:
    """For medbuilder's store: {kind: (deterministic chain, [(the files it reads, item) for every item this
    configuration runs through it])}."""
    parts = split_records(cfg)
    twins = twin_items(parts["train"]) if float(cfg.get("counterfactual_aug") or 0.0) > 0 else []
    if cfg.get("mask_confounder"):
        kinds = {"train": (deterministic_transforms(cfg, masks=True), parts["train"] + twins),
                 "base": (deterministic_transforms(cfg), parts["val"] + parts["test"])}
    else:
        kinds = {"base": (deterministic_transforms(cfg), parts["train"] + twins + parts["val"] + parts["test"])}
    return {kind: (chain, [(preprocessing_inputs(it, cfg, kind), it) for it in items])
            for kind, (chain, items) in kinds.items()}


def build_loaders(cfg: dict) -> dict:
    """{"train", "val" (or None), "test"} loaders plus the item lists, label_dict and the strategies.

    Training images go through the chain with mask_confounder's inpainting; validation and
    test images through the inference chain (what predict.py does)."""
    parts = split_records(cfg)
    base = deterministic_transforms(cfg)
    train_chain = Compose(deterministic_transforms(cfg, masks=True))
    used = strategies(cfg, parts["train"], parts["label_dict"])
    train_ds = cached_dataset(parts["train"], train_chain, cfg, "train", drop=CONFOUNDER_FIELDS)
    train_ds = with_counterfactuals(train_ds, parts["train"], train_chain, cfg)
    sampler = None
    weights = sample_weights(cfg, parts["train"], parts["label_dict"])
    if weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(weights, num_samples=len(weights), replacement=True)
    loaders = {"train": make_loader(train_ds, cfg, shuffle=True, sampler=sampler), "val": None}
    if parts["val"]:
        loaders["val"] = make_loader(cached_dataset(parts["val"], Compose(base), cfg, "val", drop=CONFOUNDER_FIELDS),
                                     cfg, shuffle=False)
    loaders["test"] = make_loader(cached_dataset(parts["test"], Compose(base), cfg, "test", drop=CONFOUNDER_FIELDS),
                                  cfg, shuffle=False)
    return {**loaders, **{f"{k}_items": parts[k] for k in ("train", "val", "test")},
            "label_dict": parts["label_dict"], "strategies": used}


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
