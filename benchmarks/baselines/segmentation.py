"""Standard-recipe baseline for segmentation: MONAI's spleen tutorial (3D UNet, Dice loss, random
positive/negative patches, sliding-window inference); 2D data gets the same recipe on slices' pixels.

    python benchmarks/baselines/segmentation.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index \
        --time-budget 120

Orientation and spacing from the build's data facts, intensity scaled to [0, 1], foreground crop,
UNet(16, 32, 64, 128, 256; strides 2; 2 residual units; batch norm), DiceLoss, Adam at 1e-4,
RandCropByPosNegLabeld 96 (4 patches an image, at most the image's size), batch 2; batches
within the budget; mean foreground Dice over the test cases.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from monai.transforms import (Compose, CropForegroundd, EnsureChannelFirstd, LoadImaged, Orientationd,
                              RandCropByPosNegLabeld, ScaleIntensityd, Spacingd, SpatialPadd)

from _common import Budget, parse, reference_module, split

RECIPE = "MONAI spleen tutorial: UNet (16..256, 2 residual units), DiceLoss, Adam 1e-4, pos/neg patches 96, batch 2"
KEYS = ["image", "mask"]
dice = reference_module("segmentation").dice_per_case  # the reference's Dice, so the figures compare


def preprocess(facts: dict) -> Compose:
    steps = [LoadImaged(keys=KEYS, image_only=True), EnsureChannelFirstd(keys=KEYS)]
    if int(facts.get("spatial_dims", 3)) == 3:
        steps.append(Orientationd(keys=KEYS, axcodes=facts.get("orientation") or "RAS"))
        if facts.get("spacing"):
            steps.append(Spacingd(keys=KEYS, pixdim=facts["spacing"], mode=("bilinear", "nearest")))
    return Compose(steps + [ScaleIntensityd(keys="image"), CropForegroundd(keys=KEYS, source_key="image")])


def main() -> None:
    facts, args = parse("Standard-recipe segmentation baseline (MONAI spleen tutorial).")
    budget = Budget(args.time_budget)
    train, test, _ = split(args, facts, key=None)
    load, dims, n = preprocess(facts), int(facts.get("spatial_dims", 3)), int(facts.get("num_classes", 2))
    train_data = [load({"image": r["image"], "mask": r["mask"]}) for r in train]
    test_data = [load({"image": r["image"], "mask": r["mask"]}) for r in test]
    smallest = np.min([d["image"].shape[1:] for d in train_data + test_data], axis=0)
    patch = [int(min(96, s)) // 16 * 16 or 16 for s in smallest]
    crop = Compose([SpatialPadd(keys=KEYS, spatial_size=patch),
                    RandCropByPosNegLabeld(keys=KEYS, label_key="mask", spatial_size=patch, pos=1, neg=1,
                                           num_samples=4, image_key="image", image_threshold=0)])
    model = UNet(spatial_dims=dims, in_channels=int(facts.get("in_channels", 1)), out_channels=n,
                 channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    loss_fn, opt = DiceLoss(to_onehot_y=True, softmax=True), torch.optim.Adam(model.parameters(), 1e-4)

    def batches():
        samples = [s for i in np.random.permutation(len(train_data)) for s in crop(train_data[i])]
        return [samples[i:i + 2] for i in range(0, len(samples), 2)]

    def step(part):
        x = torch.stack([torch.as_tensor(s["image"]) for s in part]).float()
        y = torch.stack([torch.as_tensor(s["mask"]) for s in part]).long()
        model.train()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        return len(part)

    budget.train(batches, step, len(test_data))
    model.eval()
    scores = []
    with torch.no_grad():
        for d in test_data:
            x = torch.as_tensor(d["image"])[None].float()
            logits = sliding_window_inference(x, patch, 4, model, overlap=0.25)
            scores.append(dice(logits.argmax(1)[0], torch.as_tensor(d["mask"])[0].long(), n))
    budget.emit("dice", float(np.mean(scores)), RECIPE, len(train), len(test), patch=patch,
                per_case_dice=[round(v, 4) for v in scores])


if __name__ == "__main__":
    main()
