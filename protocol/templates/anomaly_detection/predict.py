"""Predict with a trained anomaly-detection autoencoder: one anomaly score per image.

    python predict.py --config config.json --checkpoint checkpoints/model.pt FILE...   # one JSON line per file

    from predict import load
    load("path/to/workspace_or_bundle").predict(["a.jpg"])
    # [{"file": "a.jpg", "score": 0.0123, "score_kind": "mae", "scores": {...}, "threshold": null, ...}]

The score is the reconstruction error of the autoencoder trained on normal images only
(higher = more anomalous; the kind is config's ``score``). train.py saves NO operating
threshold: ``threshold`` is null and ``threshold_note`` says so; the score ranks images
and is not calibrated. When a checkpoint carries a "threshold" it is reported and
``anomalous`` is set to score > threshold.

Images go through the training chain's deterministic transforms
(dataloader.deterministic_transforms) and model.build_model. ``load`` takes a workspace
(config.json + checkpoints/model.pt), a round snapshot or a MONAI bundle
(scripts/config.json + models/model.pt + models/model_extras.json).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# keys that define the network and the preprocessing: config.json must match the checkpoint's on these
INFERENCE_KEYS = ("spatial_dims", "image_size", "in_channels", "channels", "latent_dim", "score")
SCORE_KINDS = ("mse", "mae", "top_mse")
NO_THRESHOLD = ("train.py saved no operating threshold: the score ranks images (higher = more anomalous) but is "
                "not calibrated; choose a threshold on validation data before using it to flag images")

sys.modules.pop("predict_common", None)  # imported afresh from HERE, it first drops siblings from other folders
sys.path.insert(0, str(HERE))
try:
    from predict_common import (PredictionEntryd, PredictorInferer, WritePredictiond,  # noqa: E402
                                cli_parser, input_datalist, load_weights, locate, pick_device, predict_items,
                                print_predictions, read_checkpoint, read_config, read_trained, require_inputs,
                                root_cause)
    import torch  # noqa: E402
    from dataloader import deterministic_transforms  # noqa: E402
    from model import anomaly_scores, build_model  # noqa: E402
    from monai.transforms import Compose  # noqa: E402
finally:
    sys.path.remove(str(HERE))


def inference_transforms(cfg: dict) -> list:
    """The deterministic training chain, unchanged (images only: labels are not read)."""
    return deterministic_transforms(cfg)


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Anomaly scores (reconstruction errors) for image files, with the training preprocessing."""

    task = "anomaly_detection"

    def __init__(self, cfg: dict, network: torch.nn.Module, checkpoint: dict | None = None,
                 device: str | torch.device | None = None, preprocessing=None):
        checkpoint = checkpoint or {}
        self.cfg = cfg
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing or Compose(inference_transforms(cfg))
        self.score_kind = str(cfg.get("score", "mae"))
        self.normal_label = checkpoint.get("normal_label")
        self.threshold = checkpoint.get("threshold")

    def prepare(self, path: str | Path) -> torch.Tensor:
        """The preprocessed (C, *image_size) image."""
        return self.prepare_item(path)["image"]

    def prepare_item(self, path: str | Path) -> dict:
        try:
            return self.preprocessing({"image": str(path)})
        except Exception as err:  # the file is named; the reader's reason follows
            raise ValueError(f"cannot read image file {path}: {root_cause(err)}") from err

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """The reconstruction of each image (B, C, *image_size)."""
        return self.network(batch)

    def entry(self, path: str, recon: torch.Tensor, data: dict) -> dict:
        x, recon = data["image"].detach().float().cpu().unsqueeze(0), recon.detach().float().cpu().unsqueeze(0)
        scores = {k: float(anomaly_scores(x, recon, k)[0]) for k in SCORE_KINDS}
        score = scores[self.score_kind]
        entry = {"file": str(path), "task": self.task, "score": score, "score_kind": self.score_kind,
                 "scores": scores, "normal_label": self.normal_label, "threshold": self.threshold}
        if self.threshold is None:
            entry["threshold_note"] = NO_THRESHOLD
        else:
            entry["anomalous"] = bool(score > float(self.threshold))
        return entry

    @torch.no_grad()
    def predict(self, paths) -> list[dict]:
        return predict_items(self, list(paths))


def build(config: str | Path, checkpoint: str | Path, device: str | None = None) -> Predictor:
    cfg, ckpt = read_trained(config, checkpoint, INFERENCE_KEYS)
    return Predictor(cfg, load_weights(build_model(cfg), ckpt), ckpt, device)


def load(folder: str | Path, device: str | None = None) -> Predictor:
    """The predictor of a workspace, a round snapshot or a bundle folder."""
    return build(*locate(folder), device=device)


def main(argv=None) -> None:
    args = cli_parser("Anomaly scores for image files (JSON lines).").parse_args(argv)
    print_predictions(build(args.config, args.checkpoint, args.device), args.files)

if __name__ == "__main__":
    main()
