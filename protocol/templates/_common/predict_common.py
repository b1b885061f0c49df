"""Inference helpers shared by every template's ``predict.py``: weights, config, device, folders, CLI.

Copied into each workspace as ``predict_common.py`` beside ``predict.py`` and ``common.py``;
depends only on torch, never on medbuilder. predict.py removes this module from
``sys.modules`` and imports it first, with its own folder at the front of ``sys.path``, so it
always runs from that folder; on import it drops the template modules (``SIBLINGS``) that
were loaded from another folder (another workspace or bundle in the same process), so that
predict.py then imports its own folder's ``dataloader``, ``model``, ... and never same-named
ones from elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the template modules predict.py and its siblings import by name (confounders: diagnosis, text: report_generation)
SIBLINGS = ("common", "engine", "confounders", "text", "dataloader", "model")


def drop_foreign_siblings(folder: Path = HERE, names: tuple[str, ...] = SIBLINGS) -> None:
    """Forget the modules named `names` that were not loaded from `folder`."""
    for name in names:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) if module is not None else None
        if module is not None and (origin is None or Path(origin).resolve().parent != folder):
            del sys.modules[name]


drop_foreign_siblings()

import torch  # noqa: E402
from common import load_config  # noqa: E402  (first of the siblings: quiets a harmless MONAI import warning)
from monai.inferers import Inferer  # noqa: E402

# ----------------------------------------------------------------------------- checkpoint and config


def read_checkpoint(path: str | Path) -> dict:
    """{"state_dict", "config", ...}: a training checkpoint as saved by engine.py (with the template's extras:
    label_dict, normal_label, vocab, class_names, ...), or a bundle's plain state dict (models/model.pt)
    with models/model_extras.json beside it."""
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


def check_config(cfg: dict, checkpoint: dict, keys: tuple[str, ...]) -> None:
    """config.json must describe the network the checkpoint holds: the same values on `keys` (the template's
    INFERENCE_KEYS, those that define the network and the preprocessing)."""
    trained = checkpoint.get("config") or {}
    differ = [k for k in keys if k in trained and trained.get(k) != cfg.get(k)]
    if differ:
        raise ValueError(f"config differs from the config the checkpoint was trained with on {differ} "
                         f"({ {k: trained[k] for k in differ} }): pass the training config (the round's config.json)")


def read_trained(config: str | Path, checkpoint: str | Path, keys: tuple[str, ...]) -> tuple[dict, dict]:
    """(config, checkpoint) of a trained model, read and checked against each other on `keys`."""
    cfg, ckpt = read_config(config), read_checkpoint(checkpoint)
    check_config(cfg, ckpt, keys)
    return cfg, ckpt


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


# ----------------------------------------------------------------------------- MONAI's inference workflow
# configs/inference.json runs the standard MONAI workflow (python -m monai.bundle run): a Dataset of the input
# files with the predictor's preprocessing, a DataLoader, the predictor's network step as the inferer, and a
# SupervisedEvaluator whose postprocessing turns each output into the predictor's result and writes it.

INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".mha", ".mhd",
                  ".nrrd", ".npy")
PREDICTIONS_FILE = "predictions.jsonl"


def _is_input(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.name.lower().endswith(INPUT_SUFFIXES)


def input_datalist(dataset_dir: str | Path | None, input_files=None) -> list[dict]:
    """[{"image": path, "source": path}, ...]: the files of input_files (a list, or one path) when given, else
    every image file directly in dataset_dir, sorted ([] when that folder is missing: require_inputs says so
    when the workflow runs, so that the bundle's checks still parse the config without inputs)."""
    files = [input_files] if isinstance(input_files, (str, Path)) else list(input_files or [])
    if files:
        missing = [str(f) for f in files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"input file(s) not found: {', '.join(missing)}")
        return [_input_item(Path(f)) for f in files]
    folder = Path(dataset_dir or ".")
    return [_input_item(p) for p in sorted(folder.iterdir()) if _is_input(p)] if folder.is_dir() else []


def require_inputs(datalist: list, dataset_dir: str | Path | None) -> int:
    """The number of inputs; FileNotFoundError naming the folder and what to pass when there are none."""
    if not datalist:
        raise FileNotFoundError(f"no image files ({', '.join(INPUT_SUFFIXES)}) directly in {dataset_dir} (or no such "
                                f"folder): pass --dataset_dir FOLDER or --input_files \"['a.png', 'b.png']\"")
    return len(datalist)


def _input_item(path: Path) -> dict:
    """A datalist item; "source" rides through the preprocessing unchanged (the image's own metadata may not)."""
    return {"image": str(path.resolve()), "source": str(path.resolve())}


class PredictorInferer(Inferer):
    """The predictor's network step (``Predictor.infer``) as a MONAI Inferer, for the SupervisedEvaluator."""

    def __init__(self, predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        return self.predictor.infer(inputs)


class PredictionEntryd:
    """Postprocessing: the predictor's result for one evaluated item (``Predictor.entry``), under "prediction"."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    def __call__(self, data: dict) -> dict:
        return {**data, "prediction": self.predictor.entry(data["source"], data["pred"], data)}


class WritePredictiond:
    """Postprocessing: appends each item's "prediction" as one JSON line to output_dir/predictions.jsonl."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / PREDICTIONS_FILE

    def start(self) -> Path:
        """An empty predictions file (the workflow's run calls it first: initialize and the checks leave the last
        predictions alone)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        return self.path

    def __call__(self, data: dict) -> dict:
        with self.path.open("a") as out:
            out.write(json.dumps(data["prediction"]) + "\n")
        return data


def predict_items(predictor, paths, **extra) -> list[dict]:
    """Predictor.predict: prepare_item each file, run the network step on it alone, make its entry (the evaluator's
    path, one file at a time)."""
    out = []
    for path, more in zip(paths, _per_file(extra, len(paths))):
        data = predictor.prepare_item(path, **more)
        output = predictor.infer(data["image"].unsqueeze(0).to(predictor.device))[0]
        out.append(predictor.entry(str(path), output, data))
    return out


def _per_file(extra: dict, n: int) -> list[dict]:
    """{"masks": [m1, m2]} -> [{"mask": m1}, {"mask": m2}]: optional per-file arguments, None dropped."""
    rows = [{} for _ in range(n)]
    for key, values in extra.items():
        if values is None:
            continue
        values = list(values)
        if len(values) != n:
            raise ValueError(f"{len(values)} {key} for {n} files: give one (or None) per file")
        for row, value in zip(rows, values):
            if value is not None:
                row[key.rstrip("s")] = value
    return rows


# ----------------------------------------------------------------------------- command line


def cli_parser(description: str) -> argparse.ArgumentParser:
    """predict.py's arguments: --config, --checkpoint, --device and the files (a template may add more)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default="config.json", help="training config (default: ./config.json)")
    parser.add_argument("--checkpoint", default="checkpoints/model.pt", help="weights (default: checkpoints/model.pt)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("files", nargs="+", help="image files")
    return parser


def print_predictions(predictor, files) -> None:
    """One JSON line per file, printed as each file is done; a file that cannot be read ends the run with
    its message."""
    for file in files:
        try:
            (result,) = predictor.predict([file])
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(str(err)) from None
        print(json.dumps(result), flush=True)
