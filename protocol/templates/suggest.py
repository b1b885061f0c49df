"""Data-derived template values: classes, dims, sizes, class weights, epochs and batch size.

``suggest_values(task, index, dims)`` reads the index and a small, deterministic sample
of its images (headers, thumbnails) and returns values for ``fill_template``. It never
sets ``index_dir`` (the index object does not know its folder): add it yourself.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Any

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.templates.spec import TemplateError, get_template

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".npy")
NORMAL_NAMES = ("normal", "no", "healthy", "negative", "good", "no_finding", "no finding")
SAMPLE = 16


def _is_volume(path: str) -> bool:
    return path.lower().endswith(VOLUME_SUFFIXES)


def _dims(dims: Any, index: DataIndex) -> int:
    if dims is None:
        return 3 if _is_volume(index.train[0].image) else 2
    text = str(dims).upper().rstrip("D")
    if text not in ("2", "3"):
        raise TemplateError(f"dims must be 2, 3, '2D' or '3D', not {dims!r}")
    return int(text)


def _sample(paths: list[str]) -> list[str]:
    step = max(1, len(paths) // SAMPLE)
    return paths[::step][:SAMPLE]


def _image_info(path: str) -> dict:
    """2D: size (w, h) and whether colour carries information; 3D: shape and spacing."""
    if _is_volume(path) and path.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(path)
        return {"shape": tuple(int(s) for s in img.shape[:3]),
                "spacing": tuple(float(z) for z in img.header.get_zooms()[:3])}
    from PIL import Image, ImageChops

    with Image.open(path) as im:
        size, mode = im.size, im.mode
        colour = False
        if mode in ("RGB", "RGBA"):
            im.draft("RGB", (64, 64))
            r, g, b = im.convert("RGB").resize((64, 64)).split()
            colour = max(ImageChops.difference(r, g).getextrema()[1], ImageChops.difference(g, b).getextrema()[1]) > 12
    return {"shape": size, "colour": colour}


def _epochs_and_batch(n_train: int, dims: int, small: int, large: int) -> dict:
    epochs = large if n_train <= 200 else max(small, round(large * (200 / n_train) ** 0.5))
    batch = (32 if dims == 2 else 4)
    return {"epochs": int(epochs), "batch_size": int(max(2, min(batch, n_train // 4 or 1)))}


def _square(median_side: float, options=(64, 96, 128)) -> int:
    fitting = [o for o in options if o <= median_side]
    return fitting[-1] if fitting else options[0]


def _mask_classes(paths: list[str]) -> int:
    """Number of classes (background included) from the values in a sample of masks."""
    import numpy as np

    top = 1
    for p in _sample(paths)[:6]:
        if _is_volume(p):
            import nibabel as nib

            arr = np.asarray(nib.load(p).dataobj)
        else:
            from PIL import Image

            arr = np.asarray(Image.open(p).convert("L"))
        values = np.unique(arr)
        if set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}:
            continue  # binary mask, 0/1 or 0/255
        top = max(top, int(values.max()))
    return top + 1 if top > 1 else 2


def suggest_values(task: Task | str, index: DataIndex, dims: Any = None) -> dict[str, Any]:
    """Values for fill_template derived from the data (all keys exist in the task's template)."""
    spec = get_template(task)
    d = _dims(dims, index)
    train = index.train
    infos = [_image_info(path) for path in _sample([r.image for r in train])]
    values: dict[str, Any] = {"spatial_dims": d}
    if d == 2:
        median_side = statistics.median(min(i["shape"]) for i in infos)
        colour = sum(i.get("colour", False) for i in infos) > len(infos) / 2
        values["in_channels"] = 3 if colour else 1
    task = spec.task
    if task is Task.diagnosis:
        labels = Counter(r.label for r in train)
        values["num_classes"] = len(index.label_dict) or len(labels)
        counts = [labels.get(name, 0) for name in (index.label_dict or labels)]
        if min(counts) and max(counts) / min(counts) > 1.5:
            values["class_weights"] = "balanced"
        values["image_size"] = [_square(median_side, (64, 96))] * 2 if d == 2 else [64, 64, 64]
        values.update(_epochs_and_batch(len(train), d, small=6, large=30))
    elif task is Task.segmentation:
        masks = [r.mask for r in train if r.mask]
        values["num_classes"] = max(2, len(index.label_dict)) if index.label_dict else _mask_classes(masks)
        if d == 3:
            spacing = [statistics.median(i["spacing"][a] for i in infos) for a in range(3)]
            extent = [statistics.median(i["shape"][a] * i["spacing"][a] for i in infos) for a in range(3)]
            iso = max(max(spacing), max(extent) / 96.0)  # at most ~96 voxels along the longest axis
            values["spacing"] = [round(iso, 2)] * 3
            resampled = [e / iso for e in extent]
            values["patch_size"] = [int(min(64, max(16, (s // 16) * 16))) for s in resampled]
        else:
            values["image_size"] = [_square(median_side, (64, 96, 128, 160, 192, 256))] * 2
            values["patch_size"] = None
        # ~2 minutes on 2 CPU cores: about 1.4e8 patch voxels seen in training (measured ~1.2e6 voxels/s)
        window = values["patch_size"] or values["image_size"]
        seen_per_epoch = len(train) * (4 if values["patch_size"] else 1) * math.prod(window)
        values["epochs"] = int(min(80, max(5, 1.4e8 / seen_per_epoch)))
        values["batch_size"] = int(max(1, min(2 if d == 3 else 16, len(train) // 2)))
    elif task is Task.anomaly_detection:
        names = sorted(index.label_dict or {r.label for r in train if r.label})
        normal = next((n for n in names if n.lower() in NORMAL_NAMES), None)
        if normal:
            values["normal_label"] = normal
        values["image_size"] = [64, 64] if d == 2 else [32, 32, 32]
        n_normal = sum(1 for r in train if (r.label == normal if normal else True))
        values.update(_epochs_and_batch(n_normal, d, small=15, large=60))
    elif task is Task.report_generation:
        if d != 2:
            raise TemplateError("report_generation supports 2D images only")
        lengths = sorted(len(re.findall(r"\w+|[^\w\s]", r.report or "")) for r in train)
        values["max_report_tokens"] = int(min(200, max(8, lengths[int(0.95 * (len(lengths) - 1))] + 2)))
        values["vocab_min_freq"] = 1 if len(train) < 1000 else 2
        values["image_size"] = [64, 64] if median_side < 128 else [128, 128]
        values.update(_epochs_and_batch(len(train), d, small=10, large=40))
    unknown = set(values) - set(spec.keys)
    assert not unknown, f"suggest_values produced keys missing from template.yaml: {unknown}"
    return values
