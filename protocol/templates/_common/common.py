"""Data-side helpers shared by every medbuilder training template.

Copied into each workspace as ``common.py`` (with ``engine.py``) beside
``dataloader.py``, ``model.py`` and ``train.py``. It depends only on numpy, torch and
MONAI (PyYAML optional), never on medbuilder, so a workspace runs on its own:

    python dataloader.py --config config.json   # one batch's shapes and dtypes
    python train.py --config config.json        # train, evaluate, write metrics.json

What lives here: reading the config and the index, the runtime (seed, threads,
device), deterministic subsampling and validation splits, a channel-matching
transform for mixed grey/RGB images, batch augmentation, cached datasets and loaders.
The training loop, checkpoints and metrics are in ``engine.py``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import warnings
from pathlib import Path

import numpy as np
import torch

# MONAI's optional GPU DICOM plugin logs a warning at import where nvImageCodec is absent: harmless.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*nvImageCodec.*")

from monai.transforms import MapTransform  # noqa: E402

from engine import ProgressFile, caching_with_progress  # noqa: E402  (the sibling module in the workspace)

# ----------------------------------------------------------------------------- config


def load_config(path: str | Path) -> dict:
    """config.json, with missing keys filled from template.yaml's defaults beside it."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"config file {path} not found: pass --config config.json from the workspace")
    cfg = json.loads(path.read_text())
    spec_file = path.resolve().parent / "template.yaml"
    if spec_file.exists():
        try:
            import yaml
        except ImportError:  # defaults are also written into config.json by fill_template
            return cfg
        keys = (yaml.safe_load(spec_file.read_text()) or {}).get("keys", {})
        for name, spec in keys.items():
            if name not in cfg:
                if spec.get("required"):
                    raise SystemExit(f"config.json lacks required key '{name}': {spec.get('doc', '')}")
                cfg[name] = spec.get("default")
        unknown = sorted(set(cfg) - set(keys))
        if unknown:
            print(f"note: config keys not in template.yaml (ignored by the template code): {unknown}", flush=True)
    return cfg


def parse_args(description: str) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default="config.json", help="path to config.json (default: ./config.json)")
    return load_config(parser.parse_args().config)


def setup_runtime(cfg: dict) -> torch.device:
    """Seed everything, bound CPU threads, and pick the device ('auto' = cuda when present)."""
    threads = int(cfg.get("num_threads") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    seed = int(cfg.get("seed", 0))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    wanted = str(cfg.get("device", "auto"))
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("device is 'cuda' but torch sees no GPU: set \"device\": \"auto\" or \"cpu\"")
    return torch.device(wanted)


def output_dir(cfg: dict) -> Path:
    out = Path(cfg.get("output_dir") or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    return out


# ----------------------------------------------------------------------------- index


def read_index(index_dir: str | Path) -> tuple[list[dict], list[dict], dict[str, int]]:
    """train.json, test.json and label_dict.json (empty when absent) from the index folder."""
    index_dir = Path(index_dir)
    for name in ("train.json", "test.json"):
        if not (index_dir / name).exists():
            raise SystemExit(f"{index_dir / name} not found: index_dir must hold train.json and test.json")
    train = json.loads((index_dir / "train.json").read_text())
    test = json.loads((index_dir / "test.json").read_text())
    label_file = index_dir / "label_dict.json"
    label_dict = json.loads(label_file.read_text()) if label_file.exists() else {}
    return train, test, label_dict


def _groups(records: list[dict]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        key = r.get("patient_id") or r.get("duplicate_group")
        groups.setdefault(str(key) if key is not None else f"__item{i}", []).append(i)
    return groups


def subsample(records: list[dict], n: int | None, seed: int, key: str | None = "label") -> list[dict]:
    """At most n records, deterministic, keeping each class's share when records have `key`."""
    if not n or n >= len(records):
        return list(records)
    rng = random.Random(seed)
    by_class: dict[str, list[dict]] = {}
    for r in records:
        by_class.setdefault(str(r.get(key)) if key else "", []).append(r)
    out = []
    for cls in sorted(by_class):
        items = by_class[cls][:]
        rng.shuffle(items)
        out.extend(items[: max(1, round(n * len(items) / len(records)))])
    rng.shuffle(out)
    return out[:n]


def split_validation(records: list[dict], fraction: float, seed: int, key: str | None = "label"
                     ) -> tuple[list[dict], list[dict]]:
    """Deterministic train/validation split: stratified by `key`; a patient's records, and copies of
    one image (same ``duplicate_group``), stay on one side."""
    if fraction <= 0 or len(records) < 4:
        return list(records), []
    rng = random.Random(seed)
    strata: dict[str, list[list[int]]] = {}
    for members in _groups(records).values():
        strata.setdefault(str(records[members[0]].get(key)) if key else "", []).append(members)
    val_idx: set[int] = set()
    for name in sorted(strata):
        groups = strata[name]
        rng.shuffle(groups)
        want = fraction * sum(len(g) for g in groups)
        taken = 0
        for g in groups:
            if taken + len(g) / 2 > want:
                break
            val_idx.update(g)
            taken += len(g)
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return (train, val) if train and val else (list(records), [])


# ----------------------------------------------------------------------------- transforms


class MatchChannelsd(MapTransform):
    """Grey <-> RGB(A): every image under `keys` gets `channels` channels (RGB averaged to grey)."""

    def __init__(self, keys, channels: int):
        super().__init__(keys)
        self.channels = channels

    def __call__(self, data):
        d = dict(data)
        for k in self.key_iterator(d):
            x, want = d[k], self.channels
            c = x.shape[0]
            if c == want:
                continue
            if want == 1:
                d[k] = x[: min(c, 3)].mean(dim=0, keepdim=True)
            elif c == 1:
                d[k] = x.repeat(want, *([1] * (x.ndim - 1)))
            elif c > want:
                d[k] = x[:want]
            else:
                raise ValueError(f"{k}: cannot make {want} channels from {c}")
        return d


def match_channels_transform(keys, channels: int) -> MatchChannelsd:
    return MatchChannelsd(keys, channels)


def channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """The network's weights stored channels-last (N, H, W, C): PyTorch's CPU convolutions and pooling then
    run in that layout, inputs as they come. A training step of the diagnosis, anomaly and report networks at
    their usual sizes takes 0.80-0.88 x the time on 2 cores (benchmarks/memory_format.py in the repository);
    a 3D UNet's takes longer, so 3D networks and the segmentation template stay channels-first. The values
    are the same up to float rounding."""
    return net.to(memory_format=torch.channels_last)


def augment_batch(x: torch.Tensor, rotate_degrees: float = 10.0, flip_axes=(0,), zoom: float = 0.0) -> torch.Tensor:
    """Random flips, small rotations and zoom, drawn per sample, applied to a whole batch.

    Runs on the batch's device in one affine_grid/grid_sample call: per-image MONAI random
    transforms cost 1-6 ms each on a CPU, more than the network's own step for small images.
    x: (B, C, H, W) or (B, C, D, H, W).
    """
    b, dims, dev = x.shape[0], x.ndim - 2, x.device
    for axis in flip_axes:
        flip = (torch.rand(b, device=dev) < 0.5).view(b, *[1] * (x.ndim - 1))
        x = torch.where(flip, x.flip(2 + axis), x)
    if rotate_degrees <= 0 and zoom <= 0:
        return x
    scale = 1.0 + (torch.rand(b, device=dev) * 2 - 1) * zoom
    max_angle = rotate_degrees * math.pi / 180.0

    def rotation(angle: torch.Tensor, i: int, j: int) -> torch.Tensor:
        m = torch.eye(dims, device=dev).repeat(b, 1, 1)
        c, s = torch.cos(angle), torch.sin(angle)
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        return m

    planes = [(0, 1)] if dims == 2 else [(0, 1), (0, 2), (1, 2)]
    rot = torch.eye(dims, device=dev).repeat(b, 1, 1)
    for i, j in planes:
        rot = rot @ rotation((torch.rand(b, device=dev) * 2 - 1) * max_angle, i, j)
    theta = torch.cat([rot / scale.view(b, 1, 1), torch.zeros(b, dims, 1, device=dev)], dim=2)
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cached_dataset(data: list[dict], transform, cfg: dict, name: str, drop: tuple[str, ...] = ()):
    """The dataset kind named by cfg['cache']: 'memory' (CacheDataset), 'disk' or 'none'.

    MONAI caches the output of the deterministic transforms (load, channels, resize,
    scaling) once; random augmentations after them still run every epoch. Where medbuilder
    wrote preprocessed.json beside config.json (its store of images it preprocessed with this
    template's code and configuration), the images it holds are read from there instead;
    `drop` names the keys the transform deletes.
    """
    from monai.data import CacheDataset, Dataset, PersistentDataset

    entries = preprocessed_entries(cfg, preprocessed_kind(cfg, name))
    if entries is not None:
        return PreprocessedDataset(data, entries, transform, cfg, name, drop)
    mode = str(cfg.get("cache", "memory"))
    if mode == "memory":
        cache = caching_with_progress(CacheDataset)  # writes "caching k of n" to progress.json
        return cache(data, transform, cache_rate=1.0, num_workers=max(1, int(cfg.get("num_threads") or 1)),
                     progress=False, copy_cache=False, progress_file=ProgressFile(output_dir(cfg)), name=name)
    if mode == "disk":
        cache_dir = Path(cfg.get("output_dir") or ".") / "cache" / name
        cache_dir.mkdir(parents=True, exist_ok=True)
        return PersistentDataset(data, transform, cache_dir=cache_dir)
    if mode == "none":
        return Dataset(data, transform)
    raise SystemExit(f"cache must be 'memory', 'disk' or 'none', not {mode!r}")


# ----------------------------------------------------------------------------- medbuilder's preprocessed store

PREPROCESSED = "preprocessed.json"


def preprocessed_kind(cfg: dict, name: str) -> str:
    """Which chain a dataset goes through: 'train' (training images, with mask_confounder's inpainting) or
    'base' (everything else, and training images when mask_confounder is off)."""
    return "train" if cfg.get("mask_confounder") and name.startswith("train") else "base"


def preprocessing_inputs(item: dict, cfg: dict, kind: str) -> list[str]:
    """The files an item's deterministic chain reads (its entry's key)."""
    inputs = [str(item["image"])]
    if kind == "train" and item.get("confounder_mask"):
        inputs.append(str(item["confounder_mask"]))
    return inputs


def preprocessed_entries(cfg: dict, kind: str) -> dict | None:
    """Item key -> .npy from preprocessed.json, when it was made for this configuration; else None."""
    path = Path(cfg.get("output_dir") or ".") / PREPROCESSED
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        config, entries = manifest["config"], manifest["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"note: {path} cannot be read; preprocessing here", flush=True)
        return None
    changed = sorted(k for k, v in config.items() if cfg.get(k) != v)
    if changed:
        print(f"note: {path} was made for other values of {changed}; preprocessing here", flush=True)
        return None
    return entries.get(kind)


class PreprocessedDataset(torch.utils.data.Dataset):
    """Items whose deterministic chain medbuilder already ran (read from its store), the rest through the chain;
    all held in memory, as CacheDataset holds them."""

    def __init__(self, data: list[dict], entries: dict, transform, cfg: dict, name: str, drop: tuple[str, ...]):
        kind, self.items, read = preprocessed_kind(cfg, name), [], 0
        for item in data:
            entry = entries.get("\n".join(preprocessing_inputs(item, cfg, kind)))
            image = _read_entry(entry) if entry else None
            if image is None:
                self.items.append(transform(dict(item)))
                continue
            read += 1
            self.items.append({**{k: v for k, v in item.items() if k not in drop}, "image": image})
        print(f"preprocessed cache: {read} of {len(data)} {name} images read from medbuilder's store", flush=True)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _read_entry(path: str):
    try:
        return torch.from_numpy(np.load(path, allow_pickle=False))
    except (OSError, ValueError):  # evicted meanwhile, or not an entry: preprocess the image here
        return None


def make_loader(dataset, cfg: dict, shuffle: bool, sampler=None, batch_size: int | None = None):
    from monai.data import DataLoader

    workers = int(cfg.get("num_workers", 0))
    return DataLoader(dataset, batch_size=batch_size or int(cfg["batch_size"]), shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0)


def describe_batch(batch: dict) -> str:
    """One line per key: shape and dtype (tensors) or type and length (lists)."""
    lines = []
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            extra = ""
            if value.is_floating_point() and value.numel():
                extra = f" range [{value.min().item():.3f}, {value.max().item():.3f}]"
            elif value.numel():
                extra = f" values {sorted(set(value.flatten().tolist()))[:10]}"
            lines.append(f"  {key}: shape {tuple(value.shape)} dtype {value.dtype}{extra}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"  {key}: {type(value).__name__} of {len(value)}")
    return "\n".join(lines)
