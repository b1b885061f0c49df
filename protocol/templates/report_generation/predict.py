"""Predict with a trained report generator: a report text per image.

    python predict.py --config config.json --checkpoint checkpoints/model.pt FILE...   # one JSON line per file

    from predict import load
    load("path/to/workspace_or_bundle").predict(["a.png"])
    # [{"file": "a.png", "report": "findings : ...", "n_words": 12}]

Images go through the training chain's deterministic transforms
(dataloader.deterministic_transforms) and model.build_model; reports are decoded greedily
up to max_report_tokens words with the training vocabulary, which train.py saves in the
checkpoint ("vocab") and as vocab.json beside it. ``load`` takes a workspace (config.json
+ checkpoints/model.pt), a round snapshot or a MONAI bundle (scripts/config.json +
models/model.pt + models/model_extras.json, which holds the vocabulary).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# keys that define the network and the preprocessing: config.json must match the checkpoint's on these
INFERENCE_KEYS = ("image_size", "in_channels", "encoder_channels", "encoder_pool", "embed_dim", "hidden_dim",
                  "num_layers")

sys.modules.pop("predict_common", None)  # imported afresh from HERE, it first drops siblings from other folders
sys.path.insert(0, str(HERE))
try:
    from predict_common import (PredictionEntryd, PredictorInferer, WritePredictiond,  # noqa: E402
                                cli_parser, input_datalist, load_weights, locate, pick_device, predict_items,
                                print_predictions, read_checkpoint, read_config, read_trained, require_inputs,
                                root_cause)
    import torch  # noqa: E402
    from dataloader import deterministic_transforms  # noqa: E402
    from model import build_model  # noqa: E402
    from text import Vocab  # noqa: E402
    from monai.transforms import Compose  # noqa: E402
finally:
    sys.path.remove(str(HERE))


# ----------------------------------------------------------------------------- vocabulary


def read_vocab(checkpoint: dict, config: str | Path | None = None) -> Vocab:
    """The training vocabulary: from the checkpoint, else vocab.json beside the config (train.py writes both)."""
    if checkpoint.get("vocab"):
        return Vocab(list(checkpoint["vocab"])[4:])
    if config is not None:
        cfg_path = Path(config)
        out = json.loads(cfg_path.read_text()).get("output_dir") or "."
        for candidate in (cfg_path.parent / out / "vocab.json", cfg_path.parent / "vocab.json"):
            if candidate.is_file():
                return Vocab.load(candidate)
    raise FileNotFoundError("no vocabulary: the checkpoint has no 'vocab' and no vocab.json lies beside the config; "
                            "retrain with train.py, which saves both")


def network_for(cfg: dict, checkpoint: dict) -> torch.nn.Module:
    """build_model with the vocabulary size the checkpoint was trained with."""
    return build_model(cfg, len(checkpoint["vocab"]))


def inference_transforms(cfg: dict) -> list:
    """The deterministic training chain, unchanged (images only: labels are not read)."""
    return deterministic_transforms(cfg)


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Generated report texts for image files, with the training preprocessing."""

    task = "report_generation"

    def __init__(self, cfg: dict, network: torch.nn.Module, checkpoint: dict | None = None,
                 device: str | torch.device | None = None, preprocessing=None, vocab: Vocab | None = None):
        checkpoint = checkpoint or {}
        self.cfg = cfg
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing or Compose(inference_transforms(cfg))
        self.vocab = vocab or read_vocab(checkpoint)
        self.max_tokens = int(cfg.get("max_report_tokens", 60))

    def prepare(self, path: str | Path) -> torch.Tensor:
        """The preprocessed (C, *image_size) image."""
        return self.prepare_item(path)["image"]

    def prepare_item(self, path: str | Path) -> dict:
        try:
            return self.preprocessing({"image": str(path)})
        except Exception as err:  # the file is named; the reader's reason follows
            raise ValueError(f"cannot read image file {path}: {root_cause(err)}") from err

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Greedy decoding: the logits of each chosen word, (B, vocab, T)."""
        return self.network(batch, None, self.max_tokens)

    def entry(self, path: str, logits: torch.Tensor, data: dict | None = None) -> dict:
        text = self.vocab.decode(logits.detach().argmax(dim=0).cpu())
        return {"file": str(path), "task": self.task, "report": text, "n_words": len(text.split())}

    @torch.no_grad()
    def predict(self, paths) -> list[dict]:
        return predict_items(self, list(paths))


def build(config: str | Path, checkpoint: str | Path, device: str | None = None) -> Predictor:
    cfg, ckpt = read_trained(config, checkpoint, INFERENCE_KEYS)
    vocab = read_vocab(ckpt, config)
    ckpt = {**ckpt, "vocab": vocab.itos}
    return Predictor(cfg, load_weights(network_for(cfg, ckpt), ckpt), ckpt, device, vocab=vocab)


def load(folder: str | Path, device: str | None = None) -> Predictor:
    """The predictor of a workspace, a round snapshot or a bundle folder."""
    return build(*locate(folder), device=device)


def main(argv=None) -> None:
    args = cli_parser("Generate a report for each image file (JSON lines).").parse_args(argv)
    print_predictions(build(args.config, args.checkpoint, args.device), args.files)

if __name__ == "__main__":
    main()
