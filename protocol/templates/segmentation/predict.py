"""Predict with a trained segmentation model: a mask file per image, and voxel counts.

    python predict.py --config config.json --checkpoint checkpoints/model.pt [--output-dir DIR] FILE...

    from predict import load
    load("path/to/workspace_or_bundle", output_dir="masks").predict(["case.nii.gz"])
    # [{"file": "case.nii.gz", "mask": "masks/case_mask.nii.gz", "mask_space": "input",
    #   "shape": [64, 64, 64], "voxel_counts": {"background": ..., "sphere": ...}, ...}]

Images go through the training chain's deterministic transforms for the image alone
(dataloader.deterministic_transforms(cfg, keys=("image",)): load, orientation, spacing,
size, intensity scaling, padding) and model.build_model; the network runs by sliding
windows (as in train.py's test evaluation), and the label map is taken back through the
inverse of those spatial transforms (MONAI Invertd, nearest neighbour), so the mask
lies in the INPUT's grid: same shape and, for NIfTI, the same affine. 3D masks are
written as NIfTI (uint8), 2D ones as PNG (0/255 when binary, else class indices).
Voxel counts are per class in that grid, with volumes in mm^3 for 3D (from the affine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# keys that define the network and the preprocessing: config.json must match the checkpoint's on these
INFERENCE_KEYS = ("spatial_dims", "in_channels", "num_classes", "orientation", "spacing", "image_size", "patch_size",
                  "intensity", "intensity_window", "model", "channels", "norm", "num_res_units")

sys.modules.pop("predict_common", None)  # imported afresh from HERE, it first drops siblings from other folders
sys.path.insert(0, str(HERE))
try:
    from predict_common import (PredictionEntryd, PredictorInferer, WritePredictiond,  # noqa: E402
                                cli_parser, input_datalist, load_weights, locate, pick_device, predict_items,
                                print_predictions, read_checkpoint, read_config, read_trained, require_inputs,
                                root_cause)
    import torch  # noqa: E402
    from dataloader import deterministic_transforms  # noqa: E402
    from model import build_model, inference_roi  # noqa: E402
    from monai.inferers import sliding_window_inference  # noqa: E402
    from monai.transforms import Compose, Invertd  # noqa: E402
finally:
    sys.path.remove(str(HERE))


def inference_transforms(cfg: dict) -> list:
    """The deterministic training chain for the image alone (the mask steps left out)."""
    import inspect

    if "keys" in inspect.signature(deterministic_transforms).parameters:
        return deterministic_transforms(cfg, keys=("image",))
    # a dataloader.py older than the keys argument: the paired chain, fed the image as its own "mask"
    return [_ImageAsMask()] + deterministic_transforms(cfg)


class _ImageAsMask:
    """{"image": path} -> {"image": path, "mask": path} for a paired chain (the mask is not used)."""

    def __call__(self, data: dict) -> dict:
        return {**data, "mask": data.get("mask", data["image"])}


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Label maps for image files, written as mask files in the input's grid, with voxel counts."""

    task = "segmentation"

    def __init__(self, cfg: dict, network: torch.nn.Module, checkpoint: dict | None = None,
                 device: str | torch.device | None = None, preprocessing=None,
                 output_dir: str | Path | None = None, class_names: list[str] | None = None):
        self.cfg = cfg
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing or Compose(inference_transforms(cfg))
        self.output_dir = Path(output_dir or "predictions")
        n = int(cfg["num_classes"])
        names = list(class_names or [])
        self.class_names = names if len(names) == n else ["background"] + [f"class_{c}" for c in range(1, n)]
        self.dims = int(cfg["spatial_dims"])
        self.sw = dict(sw_batch_size=int(cfg.get("sw_batch_size", 4)), overlap=float(cfg.get("sw_overlap", 0.25)))

    def prepare(self, path: str | Path) -> dict:
        try:
            return self.preprocessing({"image": str(path)})
        except Exception as err:  # the file is named; the reader's reason follows
            raise ValueError(f"cannot read image file {path}: {root_cause(err)}") from err

    prepare_item = prepare

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, *size) preprocessed images -> (B, 1, *size) label maps in the preprocessed grid (sliding windows)."""
        logits = sliding_window_inference(batch, inference_roi(self.cfg, batch.shape[2:]), predictor=self.network,
                                          **self.sw)
        return logits.argmax(dim=1, keepdim=True).to(torch.uint8)

    def segment(self, image: torch.Tensor) -> torch.Tensor:
        """(C, *size) preprocessed image -> (1, *size) label map in the preprocessed grid."""
        return self.infer(image.unsqueeze(0).to(self.device))[0].cpu()

    def to_input_grid(self, data: dict, labels: torch.Tensor):
        """The label map taken back through the inverse spatial transforms; MetaTensor with the input's affine."""
        from monai.data import MetaTensor

        image = data["image"]
        pred = MetaTensor(labels.float(), affine=image.affine, meta=dict(image.meta))
        pred.applied_operations = list(image.applied_operations)
        inverted = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image",
                           nearest_interp=True)({"image": image, "pred": pred})["pred"]
        return inverted

    def save(self, inverted, path: Path) -> tuple[Path, list[int]]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        mask = inverted[0].round().to(torch.uint8).numpy()
        stem = path.name
        for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".png", ".jpg", ".jpeg", ".npy"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if self.dims == 3:
            import nibabel as nib
            import numpy as np

            target = self.output_dir / f"{stem}_mask.nii.gz"
            affine = np.asarray(inverted.affine, dtype=np.float64)
            nib.save(nib.Nifti1Image(mask, affine), str(target))
        else:
            from PIL import Image

            target = self.output_dir / f"{stem}_mask.png"
            scale = 255 if int(self.cfg["num_classes"]) == 2 else 1
            Image.fromarray(mask.T * scale).save(target)  # MONAI's PIL reader loads (W, H): back to (H, W)
        return target, list(mask.shape)

    def entry(self, path: str, labels: torch.Tensor, data: dict) -> dict:
        """The mask of one image written in its input grid, with voxel counts (and volumes in 3D)."""
        path = Path(path)
        labels = labels.detach().cpu()
        inverted = self.to_input_grid(data, labels.as_tensor() if hasattr(labels, "as_tensor") else labels)
        target, shape = self.save(inverted, path)
        counts = torch.bincount(inverted[0].round().long().flatten(), minlength=len(self.class_names))
        entry = {"file": str(path), "task": self.task, "mask": str(target), "mask_space": "input",
                 "shape": shape, "voxel_counts": {name: int(counts[c]) for c, name in enumerate(self.class_names)},
                 "foreground_voxels": int(counts[1:].sum())}
        if self.dims == 3:
            voxel_mm3 = float(abs(torch.linalg.det(torch.as_tensor(inverted.affine, dtype=torch.float64)[:3, :3])))
            entry["voxel_volume_mm3"] = round(voxel_mm3, 6)
            entry["volumes_mm3"] = {name: round(int(counts[c]) * voxel_mm3, 3)
                                    for c, name in enumerate(self.class_names) if c > 0}
        return entry

    @torch.no_grad()
    def predict(self, paths, output_dir: str | Path | None = None) -> list[dict]:
        if output_dir is not None:
            self.output_dir = Path(output_dir)
        return predict_items(self, [Path(p) for p in paths])


def build(config: str | Path, checkpoint: str | Path, device: str | None = None,
          output_dir: str | Path | None = None, class_names: list[str] | None = None) -> Predictor:
    cfg, ckpt = read_trained(config, checkpoint, INFERENCE_KEYS)
    class_names = class_names or ckpt.get("class_names") or _index_class_names(cfg)
    return Predictor(cfg, load_weights(build_model(cfg), ckpt), ckpt, device, output_dir=output_dir,
                     class_names=class_names)


def _index_class_names(cfg: dict) -> list[str] | None:
    """Class names from the index's label_dict.json, when the training index is still there."""
    label_file = Path(cfg.get("index_dir") or "") / "label_dict.json"
    if cfg.get("index_dir") and label_file.is_file():
        labels = json.loads(label_file.read_text())
        return [name for name, _ in sorted(labels.items(), key=lambda kv: kv[1])]
    return None


def load(folder: str | Path, device: str | None = None, output_dir: str | Path | None = None) -> Predictor:
    """The predictor of a workspace, a round snapshot or a bundle folder; masks go to output_dir
    (default: ./predictions)."""
    return build(*locate(folder), device=device, output_dir=output_dir)


def main(argv=None) -> None:
    parser = cli_parser("Segment image files: mask files and voxel counts (JSON lines).")
    parser.add_argument("--output-dir", default="predictions", help="where mask files go (default: ./predictions)")
    args = parser.parse_args(argv)
    print_predictions(build(args.config, args.checkpoint, args.device, output_dir=args.output_dir), args.files)

if __name__ == "__main__":
    main()
