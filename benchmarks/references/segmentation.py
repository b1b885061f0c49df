"""Reference pipeline for segmentation: MONAI UNet on random patches, DiceCE loss, sliding-window
inference; metric: mean foreground Dice over the test cases.

    python benchmarks/references/segmentation.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index

Reads from the config: spatial_dims, in_channels, num_classes, orientation, spacing, patch_size (or
image_size), samples_per_image, intensity (percentile / window), channels, norm, num_res_units,
epochs, batch_size, lr, weight_decay, sw_batch_size, sw_overlap, max_train_items, max_test_items.
"""

from __future__ import annotations


import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Orientationd, RandSpatialCropSamplesd,
                              Resized, ScaleIntensityRanged, ScaleIntensityRangePercentilesd, Spacingd, SpatialPadd)

from _shared import Clock, emit, first_n, optimise, optimizer_and_schedule, parse, read_split, train_epochs


def preprocess(cfg: dict) -> Compose:
    dims = int(cfg["spatial_dims"])
    steps = [LoadImaged(keys=["image", "mask"], image_only=True), EnsureChannelFirstd(keys=["image", "mask"])]
    if dims == 3:
        steps.append(Orientationd(keys=["image", "mask"], axcodes=cfg.get("orientation") or "RAS"))
        if cfg.get("spacing"):
            steps.append(Spacingd(keys=["image", "mask"], pixdim=cfg["spacing"], mode=("bilinear", "nearest")))
    if cfg.get("intensity") == "window":
        lo, hi = cfg.get("intensity_window") or [-1000.0, 1000.0]
        steps.append(ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    else:
        steps.append(ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0,
                                                     clip=True))
    if not cfg.get("patch_size") and cfg.get("image_size"):
        steps.append(Resized(keys=["image", "mask"], spatial_size=cfg["image_size"], mode=("area", "nearest")))
    if cfg.get("patch_size"):
        steps.append(SpatialPadd(keys=["image", "mask"], spatial_size=cfg["patch_size"]))
    return Compose(steps)


def dice_per_case(pred: torch.Tensor, label: torch.Tensor, n: int) -> float:
    scores = []
    for c in range(1, n):
        p, g = pred == c, label == c
        denom = int(p.sum() + g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return float(np.mean(scores))


def main() -> None:
    cfg, args = parse("Reference segmentation pipeline (plain MONAI).")
    clock = Clock()
    train, test, _ = read_split(args.index_dir)
    seed = int(cfg.get("seed", 0))
    train, test = first_n(train, cfg.get("max_train_items"), seed, None), first_n(test, cfg.get("max_test_items"), seed, None)
    load = preprocess(cfg)
    train_data = [load({"image": r["image"], "mask": r["mask"]}) for r in train]
    test_data = [load({"image": r["image"], "mask": r["mask"]}) for r in test]
    patch = cfg.get("patch_size")
    crop = (RandSpatialCropSamplesd(keys=["image", "mask"], roi_size=patch, num_samples=int(cfg.get("samples_per_image", 4)),
                                    random_size=False) if patch else None)
    n = int(cfg.get("num_classes", 2))
    channels = list(cfg.get("channels") or [16, 32, 64, 128])
    model = UNet(spatial_dims=int(cfg["spatial_dims"]), in_channels=int(cfg.get("in_channels", 1)), out_channels=n,
                 channels=channels, strides=[2] * (len(channels) - 1), num_res_units=int(cfg.get("num_res_units", 1)),
                 norm=cfg.get("norm", "instance"))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    bs = int(cfg["batch_size"])
    opt, sched = optimizer_and_schedule(model, cfg, -(-len(train_data) // bs))

    def batches():
        # batch_size images a step, each giving samples_per_image patches (MONAI's convention)
        order = np.random.permutation(len(train_data))
        for i in range(0, len(order), bs):
            part = [s for j in order[i:i + bs] for s in (crop(train_data[j]) if crop else [train_data[j]])]
            x = torch.stack([torch.as_tensor(s["image"]) for s in part]).float()
            y = torch.stack([torch.as_tensor(s["mask"]) for s in part]).long()
            if cfg.get("augment", True):
                for axis in cfg.get("flip_axes") or [0]:
                    if np.random.rand() < 0.5:
                        x, y = x.flip(axis + 2), y.flip(axis + 2)
            yield x, y

    def step(x, y):
        opt.zero_grad()
        return optimise(opt, sched, loss_fn(model(x), y))

    train_epochs(cfg, clock, model, batches, step)
    model.eval()
    dice = []
    with torch.no_grad():
        for d in test_data:
            x = torch.as_tensor(d["image"])[None].float()
            roi = patch or [(-(-int(s) // 16)) * 16 for s in x.shape[2:]]
            logits = sliding_window_inference(x, roi, int(cfg.get("sw_batch_size", 4)), model,
                                              overlap=float(cfg.get("sw_overlap", 0.25)))
            dice.append(dice_per_case(logits.argmax(1)[0], torch.as_tensor(d["mask"])[0].long(), n))
    emit("dice", float(np.mean(dice)), clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"],
         schedule_epochs=int(cfg["epochs"]),
         per_case_dice=[round(v, 4) for v in dice])


if __name__ == "__main__":
    main()
