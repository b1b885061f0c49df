"""Segmentation dataloader: index records {"image", "mask"} -> MONAI datasets and loaders.

Training batches are random patches {"image": float32 (B*samples_per_image, C, *patch_size),
"mask": float32 (B*samples_per_image, 1, *patch_size) with values 0..num_classes-1}.
Test batches are whole images (batch size 1), segmented by sliding windows in train.py.
The deterministic chain (load, orient, resample, resize, scale, label map) is cached.

Check a batch (the Module Architect's check):  python dataloader.py --config config.json
"""

from __future__ import annotations

import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import (cached_dataset, describe_batch, make_loader, match_channels_transform, parse_args, read_index,
                    split_validation, subsample)
from monai.transforms import (Compose, DivisiblePadd, EnsureChannelFirstd, EnsureTyped, Lambdad, LoadImaged,
                              NormalizeIntensityd, Orientationd, RandCropByPosNegLabeld, RandFlipd,
                              RandScaleIntensityd, RandShiftIntensityd, Resized, ScaleIntensityd,
                              ScaleIntensityRanged, ScaleIntensityRangePercentilesd, Spacingd, SpatialPadd)


KEYS = ("image", "mask")


def _check_sizes(cfg: dict) -> None:
    dims = int(cfg["spatial_dims"])
    for key in ("spacing", "image_size", "patch_size"):
        value = cfg.get(key)
        if value is not None and len(value) != dims:
            raise SystemExit(f"{key} {value} must have spatial_dims={dims} numbers (or be null)")
    if dims == 2 and cfg.get("spacing"):
        raise SystemExit("spacing applies to 3D volumes only: set it to null for 2D images")


class LabelMap:
    """Binary: any mask value > 0 is foreground (covers 0/1 and 0/255 masks); else values as classes."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, m: torch.Tensor) -> torch.Tensor:
        if self.num_classes == 2:
            return (m > 0).to(torch.float32)
        return torch.round(m).clamp(0, self.num_classes - 1).to(torch.float32)


def deterministic_transforms(cfg: dict, keys: tuple = KEYS) -> list:
    """Load, orient, resample, resize, scale, map labels, pad: cached once.

    keys=("image",) gives the same chain for an image alone (inference, predict.py):
    the mask steps are left out and every other step is unchanged.
    """
    _check_sizes(cfg)
    dims = int(cfg["spatial_dims"])
    keys = tuple(keys)
    has_mask = "mask" in keys

    def modes(image_mode: str, mask_mode: str) -> tuple:
        return tuple(mask_mode if k == "mask" else image_mode for k in keys)

    t = [LoadImaged(keys=keys, image_only=True),
         EnsureChannelFirstd(keys=keys),
         match_channels_transform("image", int(cfg["in_channels"]))]
    if has_mask:
        t.append(match_channels_transform("mask", 1))
    if dims == 3 and cfg.get("orientation"):
        t.append(Orientationd(keys=keys, axcodes=cfg["orientation"], labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if dims == 3 and cfg.get("spacing"):
        t.append(Spacingd(keys=keys, pixdim=cfg["spacing"], mode=modes("bilinear", "nearest")))
    if cfg.get("image_size"):
        t.append(Resized(keys=keys, spatial_size=cfg["image_size"], mode=modes("area", "nearest")))
    mode = cfg.get("intensity", "percentile")
    if mode == "percentile":
        t.append(ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0,
                                                 clip=True))
    elif mode == "minmax":
        t.append(ScaleIntensityd(keys="image", minv=0.0, maxv=1.0))
    elif mode == "zscore":
        t.append(NormalizeIntensityd(keys="image", channel_wise=True))
    elif mode == "window":
        low, high = cfg.get("intensity_window") or (-1000.0, 1000.0)
        t.append(ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
    else:
        raise SystemExit(f"intensity must be percentile, minmax, zscore or window, not {mode!r}")
    if has_mask:
        t.append(Lambdad(keys="mask", func=LabelMap(int(cfg["num_classes"]))))
    if cfg.get("patch_size"):
        t.append(SpatialPadd(keys=keys, spatial_size=cfg["patch_size"]))
    else:
        t.append(DivisiblePadd(keys=keys, k=16))
    t.append(EnsureTyped(keys=keys, dtype=torch.float32))
    return t


def random_transforms(cfg: dict) -> list:
    """Per-epoch training randomness: patches (pos/neg balanced), flips, intensity jitter."""
    t = []
    if cfg.get("patch_size"):
        t.append(RandCropByPosNegLabeld(keys=KEYS, label_key="mask", spatial_size=cfg["patch_size"], pos=1, neg=1,
                                        num_samples=int(cfg.get("samples_per_image", 4))))
    if cfg.get("augment", True):
        for axis in cfg.get("flip_axes") or []:
            t.append(RandFlipd(keys=KEYS, prob=0.5, spatial_axis=int(axis)))
        t += [RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
              RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5)]
    t.append(EnsureTyped(keys=KEYS, dtype=torch.float32, track_meta=False))
    return t


def to_items(records: list[dict]) -> list[dict]:
    return [{"image": r["image"], "mask": r["mask"], "id": r.get("id", r["image"])} for r in records]


def split_records(cfg: dict) -> dict:
    train, test, _ = read_index(cfg["index_dir"])
    seed = int(cfg["seed"])
    train = subsample(train, cfg.get("max_train_items"), seed, key=None)
    test = subsample(test, cfg.get("max_test_items"), seed, key=None)
    train, val = split_validation(train, float(cfg.get("val_fraction", 0.0)), seed, key=None)
    return {"train": to_items(train), "val": to_items(val), "test": to_items(test)}


def build_loaders(cfg: dict) -> dict:
    """{"train", "val" (or None), "test"} loaders plus the item lists."""
    parts = split_records(cfg)
    base = deterministic_transforms(cfg)
    train_ds = cached_dataset(parts["train"], Compose(base + random_transforms(cfg)), cfg, "train")
    loaders = {"train": make_loader(train_ds, cfg, shuffle=True), "val": None}
    if parts["val"]:
        loaders["val"] = make_loader(cached_dataset(parts["val"], Compose(base), cfg, "val"), cfg, False, batch_size=1)
    loaders["test"] = make_loader(cached_dataset(parts["test"], Compose(base), cfg, "test"), cfg, False, batch_size=1)
    return {**loaders, **{f"{k}_items": parts[k] for k in ("train", "val", "test")}}


def main() -> None:
    cfg = parse_args("Load one segmentation batch and print its shapes and dtypes.")
    torch.set_num_threads(max(1, int(cfg.get("num_threads") or 1)))
    cfg = {**cfg, "max_train_items": min(int(cfg.get("max_train_items") or 4), 4),
           "max_test_items": 1, "val_fraction": 0.0, "cache": "none"}
    loaders = build_loaders(cfg)
    for split in ("train", "test"):
        batch = next(iter(loaders[split]))
        print(f"{split} batch ({len(loaders[split + '_items'])} items checked):\n{describe_batch(batch)}")
    batch = next(iter(loaders["train"]))
    labels = set(batch["mask"].unique().tolist())
    if not labels <= set(range(int(cfg["num_classes"]))):
        raise SystemExit(f"mask values {sorted(labels)} are outside 0..{int(cfg['num_classes']) - 1}")
    if cfg.get("patch_size") and tuple(batch["image"].shape[2:]) != tuple(cfg["patch_size"]):
        raise SystemExit(f"patch shape {tuple(batch['image'].shape[2:])} != patch_size {cfg['patch_size']}")
    print("dataloader OK")


if __name__ == "__main__":
    main()
