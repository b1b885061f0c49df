"""What an image's file says about how it was acquired, apart from its anatomy.

Numbers: original width and height (and depth for volumes), aspect ratio, the width of uniform borders,
bits per sample, file size and intensity statistics. Categories: file format, image mode, and the DICOM
tags that name the machine and the site (manufacturer, model, station, institution) when they are
present. A classifier that separates the classes from these alone finds a shortcut in the data.

Images are the dataset's files, read as data: a path that is a link is not followed (its features are
missing, like those of an unreadable file).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

NUMERIC = ("width", "height", "depth", "aspect", "border", "bits", "file_kib", "mean", "std", "p01", "p99")
DICOM_TAGS = ("Manufacturer", "ManufacturerModelName", "StationName", "InstitutionName")
BORDER_TOLERANCE = 8  # grey levels (of 255) a border row may differ from the edge value
THUMB = 256


def features(path: Path) -> dict:
    """The acquisition features of one image file or DICOM series folder; {"error": ...} if unreadable."""
    path = Path(path)
    try:
        if path.is_symlink():
            return {"error": "a link (not followed)"}
        if path.is_dir():
            return _dicom_series(path)
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            return _nifti(path)
        if name.endswith((".dcm", ".dicom")):
            return _dicom(path)
        return _picture(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a missing row, named in the audit
        return {"error": f"{type(err).__name__}: {err}"[:200]}


def features_of(paths: list) -> list[dict]:
    """features() of each path, each file's row remembered by its content across builds
    (``cache/host_memo.py``); links, folders and unreadable files are read (or refused) every time. The rows
    not remembered are read on forked worker processes (``review/per_image.py``) and written to the memo
    here, in one transaction."""
    from medbuilder.cache.host_memo import HostMemo, source_digest
    from medbuilder.review.per_image import process_map

    paths = [Path(p) for p in paths]
    memo = HostMemo("acquisition", source_digest(__file__))
    try:
        keys = [memo.file_key(p) if memo.enabled else None for p in paths]
        rows = [memo.get_json(k) if k else None for k in keys]

        missing = [i for i, row in enumerate(rows) if row is None]
        with process_map() as each:
            for i, row in zip(missing, each(lambda i: features(paths[i]), missing)):
                rows[i] = row
                if keys[i] and "error" not in row:
                    memo.put_json(keys[i], row)
        return rows
    finally:
        memo.close()


def _file_kib(path: Path) -> float:
    return os.lstat(path).st_size / 1024.0


def _intensity(pixels: np.ndarray) -> dict:
    if pixels.dtype == np.uint8:
        return _intensity_uint8(pixels)
    values = pixels.astype(np.float64).ravel()
    lo, hi = np.percentile(values, [1, 99])
    return {"mean": float(values.mean()), "std": float(values.std()), "p01": float(lo), "p99": float(hi)}


def _intensity_uint8(pixels: np.ndarray) -> dict:
    """The same figures from the 256-bin histogram (np.percentile's linear interpolation between order
    statistics, read off the cumulative counts): no sort of every pixel."""
    counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ levels / n)
    std = float(np.sqrt(max(counts @ (levels - mean) ** 2 / n, 0.0)))
    cumulative = np.cumsum(counts)

    def order_statistic(k: int) -> float:
        return float(np.searchsorted(cumulative, k + 1))

    def percentile(q: float) -> float:
        position = (n - 1) * q / 100.0
        below = int(np.floor(position))
        low, high = order_statistic(below), order_statistic(min(below + 1, int(n) - 1))
        return low + (high - low) * (position - below)

    return {"mean": mean, "std": std, "p01": percentile(1), "p99": percentile(99)}


def border_width(gray: np.ndarray) -> float:
    """Mean, over the four edges, of the fraction of the image that is uniform from that edge inwards."""
    gray = np.asarray(gray)
    scale = 255.0 / max(float(gray.max()) - float(gray.min()), 1e-6)
    # a line's largest distance from the edge value is max(line max - edge, edge - line min)
    rows = (gray.max(axis=1).astype(np.float64), gray.min(axis=1).astype(np.float64))
    columns = (gray.max(axis=0).astype(np.float64), gray.min(axis=0).astype(np.float64))
    fractions = []
    for (high, low), edge_line, reverse in ((rows, gray[0], False), (rows, gray[-1], True),
                                            (columns, gray[:, 0], False), (columns, gray[:, -1], True)):
        edge = float(np.median(edge_line.astype(np.float64)))
        distance = np.maximum(high - edge, edge - low)[::-1 if reverse else 1]
        uniform = distance * scale <= BORDER_TOLERANCE
        depth = int(np.argmin(uniform)) if not uniform.all() else len(uniform)
        fractions.append(depth / len(uniform))
    return float(np.mean(fractions))


def _picture(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as im:
        width, height, mode, fmt = im.width, im.height, im.mode, (im.format or path.suffix.lstrip(".")).lower()
        bits = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "I;16": 16, "I": 32, "F": 32}.get(mode, 8)
        im.draft("L", (THUMB, THUMB))
        gray = np.asarray(im.convert("L"))
    return {"width": width, "height": height, "aspect": width / height, "border": border_width(gray),
            "bits": bits, "file_kib": _file_kib(path), **_intensity(gray), "format": fmt, "mode": mode}


def _dicom(path: Path) -> dict:
    import pydicom

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    gray = pixels if pixels.ndim == 2 else pixels.reshape(-1, *pixels.shape[-2:])[0]
    out = {"width": int(ds.Columns), "height": int(ds.Rows), "aspect": int(ds.Columns) / int(ds.Rows),
           "border": border_width(gray), "bits": int(getattr(ds, "BitsStored", 0) or 0),
           "file_kib": _file_kib(path), **_intensity(pixels), "format": "dicom",
           "mode": str(getattr(ds, "PhotometricInterpretation", ""))}
    return {**out, **{tag: str(getattr(ds, tag, "") or "") for tag in DICOM_TAGS}}


def _dicom_series(folder: Path) -> dict:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    if not files:
        return {"error": "an empty series folder"}
    first = _dicom(files[0])
    return {**first, "depth": len(files), "file_kib": sum(_file_kib(p) for p in files)}


def _nifti(path: Path) -> dict:
    import nibabel

    img = nibabel.load(str(path))
    shape = tuple(int(s) for s in img.shape[:3]) + (1,) * max(0, 3 - len(img.shape))
    data = np.asanyarray(img.dataobj)
    middle = data[..., shape[2] // 2] if data.ndim >= 3 else data
    return {"width": shape[0], "height": shape[1], "depth": shape[2], "aspect": shape[0] / shape[1],
            "border": border_width(np.asarray(middle).reshape(shape[0], shape[1])),
            "bits": int(img.get_data_dtype().itemsize * 8), "file_kib": _file_kib(path), **_intensity(data),
            "format": "nifti", "mode": str(img.get_data_dtype())}


def _number_or_nan(value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else math.nan


def feature_matrix(rows: list[dict]) -> tuple[np.ndarray, list[str]]:
    """Numbers as columns (a missing number: the column's median), categories one-hot."""
    numeric = [k for k in NUMERIC if any(isinstance(r.get(k), (int, float)) for r in rows)]
    columns, names = [], []
    for key in numeric:
        values = np.array([_number_or_nan(r.get(key)) for r in rows])
        values[np.isnan(values)] = np.nanmedian(values) if not np.isnan(values).all() else 0.0
        columns.append(values)
        names.append(key)
    for key in ("format", "mode", *DICOM_TAGS):
        seen = sorted({str(r[key]) for r in rows if r.get(key)})
        if len(seen) < 2:
            continue  # one value for every image says nothing
        for value in seen:
            columns.append(np.array([float(str(r.get(key)) == value) for r in rows]))
            names.append(f"{key}={value}")
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(rows), 0))
    return matrix, names


FEATURES_FILE = "metadata_features.json"  # each audited image's features, for the model's reliance on them


def metadata_forest(seed: int):
    """The metadata-only classifier of the acquisition check and of the model's reliance on metadata."""
    from sklearn.ensemble import RandomForestClassifier

    # 100 trees: on Br35H the out-of-fold AUROC moves by under 0.001 from 200, far less than between fold splits
    return RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
