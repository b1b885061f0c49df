"""Train and evaluate a segmentation model:  python train.py --config config.json

Writes (under output_dir): checkpoints/model.pt, checkpoints/last.pt (and best.pt with
validation), train_log.jsonl (one line per epoch), metrics.json (mean foreground Dice
with a bootstrap 95% interval and the per-case Dice list), predictions.json (one entry
per test case) and predictions/ (each predicted mask, in the resampled grid).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

# common first: it quiets a harmless MONAI import-time warning about an optional GPU plugin
from common import output_dir, parse_args, setup_runtime
from engine import bootstrap_ci, finish, fit
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from dataloader import build_loaders
from model import build_model, inference_roi


def case_dice(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> list[float]:
    """Dice per foreground class for one case, by MONAI's compute_dice (1.0 when a class is absent from both,
    0.0 when only the prediction has it)."""
    def onehot(x: torch.Tensor) -> torch.Tensor:
        return one_hot(x.reshape(1, 1, *x.shape).long(), num_classes)

    dice = compute_dice(onehot(pred), onehot(label), include_background=False, ignore_empty=False)
    return [float(d) for d in dice[0]]


def save_mask(mask: np.ndarray, image: torch.Tensor, path: Path, dims: int, num_classes: int) -> str:
    """NIfTI with the (resampled) image affine for 3D; PNG for 2D (0/255 when binary)."""
    if dims == 3:
        import nibabel as nib

        affine = np.asarray(getattr(image, "affine", torch.eye(4)), dtype=np.float64)
        path = path.with_suffix(".nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(path))
    else:
        from PIL import Image

        path = path.with_suffix(".png")
        scale = 255 if num_classes == 2 else 1
        Image.fromarray((mask.T * scale).astype(np.uint8)).save(path)  # MONAI's PIL reader loads (W, H)
    return str(path)


def main() -> None:
    started = time.perf_counter()
    cfg = parse_args("Train a segmentation network and evaluate it on test.json.")
    device = setup_runtime(cfg)
    out = output_dir(cfg)
    t0 = time.perf_counter()
    data = build_loaders(cfg)
    cache_seconds = time.perf_counter() - t0
    n_classes, dims = int(cfg["num_classes"]), int(cfg["spatial_dims"])
    print(f"device {device}; {len(data['train_items'])} train / {len(data['val_items'])} val / "
          f"{len(data['test_items'])} test images; data ready in {cache_seconds:.1f}s", flush=True)

    model = build_model(cfg).to(device)
    criterion = DiceCELoss(to_onehot_y=True, softmax=True)
    sw = dict(sw_batch_size=int(cfg.get("sw_batch_size", 4)), overlap=float(cfg.get("sw_overlap", 0.25)))

    def segment(image: torch.Tensor) -> torch.Tensor:
        roi = inference_roi(cfg, image.shape[2:])
        return sliding_window_inference(image.to(device), roi, predictor=model, **sw)

    def train_step(batch):
        x, y = batch["image"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True)
        return criterion(model(x), y), x.shape[0]

    def val_step(batch):
        return float(criterion(segment(batch["image"]), batch["mask"].to(device))), 1

    result = fit(model, data["train"], cfg, out, train_step, data["val"], val_step)

    model.eval()
    pred_dir = out / "predictions"
    if cfg.get("save_masks", True):
        pred_dir.mkdir(exist_ok=True)
    predictions, dice_cases = [], []
    with torch.no_grad():
        for i, (batch, item) in enumerate(zip(data["test"], data["test_items"])):
            pred = segment(batch["image"]).argmax(dim=1)[0].cpu()
            label = batch["mask"][0, 0].round().long()
            per_class = case_dice(pred, label, n_classes)
            dice_cases.append(float(np.mean(per_class)))
            entry = {"id": item["id"], "image": item["image"], "mask": item["mask"], "dice": dice_cases[-1],
                     "per_class_dice": per_class, "pred_voxels": int((pred > 0).sum()),
                     "true_voxels": int((label > 0).sum())}
            if cfg.get("save_masks", True):
                stem = Path(item["image"]).name.split(".")[0]
                entry["pred_mask"] = save_mask(pred.numpy(), batch["image"][0], pred_dir / f"case{i:04d}_{stem}",
                                               dims, n_classes)
            predictions.append(entry)
            print(f"test case {i + 1}/{len(data['test_items'])}: dice {dice_cases[-1]:.4f}", flush=True)

    dice = np.array(dice_cases)
    n_boot = int(cfg.get("bootstrap", 1000))
    per_class_mean = np.mean([p["per_class_dice"] for p in predictions], axis=0).tolist()
    metrics = {"task": "segmentation", "metric": "dice", "value": float(dice.mean()),
               "ci95": bootstrap_ci(lambda idx: float(dice[idx].mean()), len(dice), n_boot, int(cfg["seed"]))
               if n_boot else None,
               "per_case_dice": dice.tolist(), "per_class_dice": per_class_mean,
               "n_train": len(data["train_items"]), "n_val": len(data["val_items"]), "n_test": len(dice),
               **result, "cache_seconds": round(cache_seconds, 2), "device": str(device),
               "spacing": cfg.get("spacing"), "patch_size": cfg.get("patch_size"), "image_size": cfg.get("image_size"),
               "images_per_second_unit": "training patches (or whole images without patch_size) per second"}
    finish(out, metrics, predictions, started)


if __name__ == "__main__":
    main()
