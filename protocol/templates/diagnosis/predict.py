"""Predict with a trained diagnosis model: class probabilities and the predicted class.

    python predict.py --config config.json --checkpoint checkpoints/model.pt FILE...   # one JSON line per file

    from predict import load
    load("path/to/workspace_or_bundle").predict(["a.jpg", "b.jpg"])
    # [{"file": "a.jpg", "prediction": "yes", "probabilities": {"no": 0.2, "yes": 0.8}, "score": 0.8, ...}]

Images go through the training chain's deterministic transforms
(dataloader.deterministic_transforms: load, channels, resize, scale to [0, 1], and
``roi`` when the model was trained with it) and model.build_model, so an image is
prepared exactly as in training. The training-only strategies (mask_confounder,
counterfactual_aug, group_balanced) do nothing here; with mask_confounder a mask may
be given per file (``predict(files, masks=[...])``) and is then inpainted. ``load`` takes a
workspace (config.json + checkpoints/model.pt), a round snapshot (same files) or a
MONAI bundle (scripts/config.json + models/model.pt + models/model_extras.json); a
bundle's configs/inference.json builds the same Predictor from its scripts/ folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# keys that define the network and the preprocessing: config.json must match the checkpoint's on these
INFERENCE_KEYS = ("spatial_dims", "image_size", "in_channels", "num_classes", "model", "channels", "positive_label",
                  "roi", "roi_crop")

sys.modules.pop("predict_common", None)  # imported afresh from HERE, it first drops siblings from other folders
sys.path.insert(0, str(HERE))
try:
    from predict_common import (PredictionEntryd, PredictorInferer, WritePredictiond,  # noqa: E402
                                cli_parser, input_datalist, load_weights, locate, pick_device, predict_items,
                                print_predictions, read_checkpoint, read_config, read_trained, require_inputs,
                                root_cause)
    import torch  # noqa: E402
    from dataloader import CACHE_KEYS, deterministic_transforms  # noqa: E402
    from model import build_model  # noqa: E402
    from monai.transforms import Compose  # noqa: E402
finally:
    sys.path.remove(str(HERE))


def inference_transforms(cfg: dict) -> list:
    """The deterministic chain (images only: labels are not read), roi included; with mask_confounder,
    a mask given with a file is inpainted as in training."""
    if cfg.get("mask_confounder"):
        return deterministic_transforms(cfg, masks=True)
    return deterministic_transforms(cfg)  # also what an older workspace's dataloader.py accepts


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Class probabilities for image files, with the training preprocessing."""

    task = "diagnosis"
    cache_keys = CACHE_KEYS  # medbuilder's store of preprocessed images is keyed by these config values

    def __init__(self, cfg: dict, network: torch.nn.Module, checkpoint: dict | None = None,
                 device: str | torch.device | None = None, preprocessing=None, threshold: float | None = None,
                 temperature: float | None = None):
        """threshold (binary models): call a case positive when its positive-class probability is at least
        this; None: the class with the highest probability (the same as 0.5). temperature: probabilities are
        softmax(logits / temperature) (temperature scaling, fitted on a validation split); None: 1."""
        checkpoint = checkpoint or {}
        self.threshold = None if threshold is None else float(threshold)
        self.temperature = 1.0 if temperature is None else float(temperature)
        self.cfg = cfg
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing or Compose(inference_transforms(cfg))
        label_dict = checkpoint.get("label_dict") or {str(i): i for i in range(int(cfg["num_classes"]))}
        self.names = {int(i): name for name, i in label_dict.items()}
        self.positive = None
        if int(cfg["num_classes"]) == 2:
            self.positive = int(label_dict[cfg["positive_label"]]) if cfg.get("positive_label") else 1

    def prepare(self, path: str | Path, mask: str | Path | None = None) -> torch.Tensor:
        """The preprocessed (C, *image_size) image."""
        return self.prepare_item(path, mask)["image"]

    def prepare_item(self, path: str | Path, mask: str | Path | None = None) -> dict:
        item = {"image": str(path), **({"confounder_mask": str(mask)} if mask else {})}
        try:
            return self.preprocessing(item)
        except Exception as err:  # the file is named; the reader's reason follows
            raise ValueError(f"cannot read image file {path}{f' or mask {mask}' if mask else ''}: "
                             f"{root_cause(err)}") from err

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, classes): softmax(logits / temperature)."""
        return torch.softmax(self.network(batch).float() / self.temperature, dim=1)

    def entry(self, path: str, probabilities: torch.Tensor, data: dict | None = None) -> dict:
        p = probabilities.detach().float().cpu()
        entry = {"file": str(path), "task": self.task, "prediction": self.names[int(p.argmax())],
                 "probabilities": {self.names[c]: round(float(p[c]), 6) for c in range(len(p))}}
        if self.positive is not None:
            entry["positive_label"] = self.names[self.positive]
            entry["score"] = round(float(p[self.positive]), 6)
            if self.threshold is not None:
                called = self.positive if float(p[self.positive]) >= self.threshold else 1 - self.positive
                entry["prediction"], entry["threshold"] = self.names[called], self.threshold
        return entry

    @torch.no_grad()
    def predict(self, paths, masks=None) -> list[dict]:
        """One entry per file; masks (optional, one path or None per file) are inpainted first when the
        model was trained with mask_confounder."""
        return predict_items(self, list(paths), masks=masks)


def build(config: str | Path, checkpoint: str | Path, device: str | None = None) -> Predictor:
    cfg, ckpt = read_trained(config, checkpoint, INFERENCE_KEYS)
    return Predictor(cfg, load_weights(build_model(cfg), ckpt), ckpt, device)


def load(folder: str | Path, device: str | None = None) -> Predictor:
    """The predictor of a workspace, a round snapshot or a bundle folder."""
    return build(*locate(folder), device=device)


def main(argv=None) -> None:
    args = cli_parser("Predict class probabilities for image files (JSON lines).").parse_args(argv)
    print_predictions(build(args.config, args.checkpoint, args.device), args.files)

if __name__ == "__main__":
    main()
