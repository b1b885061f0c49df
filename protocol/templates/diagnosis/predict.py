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

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIBLINGS = ("common", "engine", "confounders", "dataloader", "model")
# keys that define the network and the preprocessing: config.json must match the checkpoint's on these
INFERENCE_KEYS = ("spatial_dims", "image_size", "in_channels", "num_classes", "model", "channels", "positive_label",
                  "roi", "roi_crop")


def _import_siblings() -> None:
    """Import this folder's template modules, never same-named ones already loaded from another
    folder (another workspace or bundle in the same process)."""
    for name in SIBLINGS:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if module is not None and (origin is None or Path(origin).resolve().parent != HERE):
            del sys.modules[name]
    sys.path.insert(0, str(HERE))


_import_siblings()
try:
    import torch  # noqa: E402
    from common import load_config  # noqa: E402  (first: quiets a harmless MONAI import warning)
    from dataloader import deterministic_transforms  # noqa: E402
    from model import build_model  # noqa: E402
    from monai.transforms import Compose  # noqa: E402
finally:
    sys.path.remove(str(HERE))


# ----------------------------------------------------------------------------- checkpoint and config


def read_checkpoint(path: str | Path) -> dict:
    """{"state_dict", "config", "label_dict", ...}: a training checkpoint as saved by engine.py, or a
    bundle's plain state dict (models/model.pt) with models/model_extras.json beside it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train first (python train.py --config config.json)")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in data:
        data = {"state_dict": data}
        extras = path.parent / "model_extras.json"
        if extras.is_file():
            data.update(json.loads(extras.read_text()))
    return data


def read_config(path: str | Path) -> dict:
    """The training config (defaults from template.yaml beside it filled in)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"config {path} not found: pass the training config (config.json)")
    return load_config(path)


def check_config(cfg: dict, checkpoint: dict) -> None:
    """config.json must describe the network the checkpoint holds."""
    trained = checkpoint.get("config") or {}
    differ = [k for k in INFERENCE_KEYS if k in trained and trained.get(k) != cfg.get(k)]
    if differ:
        raise ValueError(f"config differs from the config the checkpoint was trained with on {differ} "
                         f"({ {k: trained[k] for k in differ} }): pass the training config (the round's config.json)")


def load_weights(network: torch.nn.Module, checkpoint: dict) -> torch.nn.Module:
    network.load_state_dict(checkpoint["state_dict"])
    return network.eval()


def root_cause(err: BaseException) -> str:
    """The innermost exception's type and message (MONAI wraps reader errors in 'applying transform ...')."""
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"


def pick_device(wanted: str | None = None) -> torch.device:
    wanted = wanted or "auto"
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


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
        item = {"image": str(path), **({"confounder_mask": str(mask)} if mask else {})}
        try:
            return self.preprocessing(item)["image"]
        except Exception as err:  # the file is named; the reader's reason follows
            raise ValueError(f"cannot read image file {path}{f' or mask {mask}' if mask else ''}: "
                             f"{root_cause(err)}") from err

    @torch.no_grad()
    def predict(self, paths, masks=None) -> list[dict]:
        """One entry per file; masks (optional, one path or None per file) are inpainted first when the
        model was trained with mask_confounder."""
        paths = list(paths)
        masks = list(masks) if masks is not None else [None] * len(paths)
        if len(masks) != len(paths):
            raise ValueError(f"{len(masks)} masks for {len(paths)} files: give one mask (or None) per file")
        out = []
        for path, mask in zip(paths, masks):
            x = self.prepare(path, mask).unsqueeze(0).to(self.device)
            p = torch.softmax(self.network(x).float() / self.temperature, dim=1)[0].cpu()
            entry = {"file": str(path), "task": self.task, "prediction": self.names[int(p.argmax())],
                     "probabilities": {self.names[c]: round(float(p[c]), 6) for c in range(len(p))}}
            if self.positive is not None:
                entry["positive_label"] = self.names[self.positive]
                entry["score"] = round(float(p[self.positive]), 6)
                if self.threshold is not None:
                    called = self.positive if float(p[self.positive]) >= self.threshold else 1 - self.positive
                    entry["prediction"], entry["threshold"] = self.names[called], self.threshold
            out.append(entry)
        return out


def locate(folder: str | Path) -> tuple[Path, Path]:
    """(config, checkpoint) of a bundle, a workspace or a round snapshot."""
    folder = Path(folder)
    if (folder / "models" / "model.pt").is_file():
        return folder / "scripts" / "config.json", folder / "models" / "model.pt"
    config = folder / "config.json"
    if config.is_file():
        out = json.loads(config.read_text()).get("output_dir") or "."
        for ckpt in (folder / out / "checkpoints" / "model.pt", folder / "checkpoints" / "model.pt"):
            if ckpt.is_file():
                return config, ckpt
    raise FileNotFoundError(f"{folder} holds neither a MONAI bundle (models/model.pt) nor a trained workspace "
                            f"(config.json and checkpoints/model.pt): train first (python train.py --config config.json)")


def build(config: str | Path, checkpoint: str | Path, device: str | None = None) -> Predictor:
    cfg, ckpt = read_config(config), read_checkpoint(checkpoint)
    check_config(cfg, ckpt)
    return Predictor(cfg, load_weights(build_model(cfg), ckpt), ckpt, device)


def load(folder: str | Path, device: str | None = None) -> Predictor:
    """The predictor of a workspace, a round snapshot or a bundle folder."""
    return build(*locate(folder), device=device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Predict class probabilities for image files (JSON lines).")
    parser.add_argument("--config", default="config.json", help="training config (default: ./config.json)")
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="weights (default: checkpoints/model.pt)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("files", nargs="+", help="image files")
    args = parser.parse_args(argv)
    predictor = build(args.config, args.checkpoint, args.device)
    for file in args.files:  # one line as each file is done
        try:
            (result,) = predictor.predict([file])
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(str(err)) from None
        print(json.dumps(result), flush=True)

if __name__ == "__main__":
    main()
