"""Checks that decode the indexed files: unreadable images, empty or constant masks, image/mask mismatches.

Cost is bounded per format: JPEGs are decoded at 1/8 scale (PIL draft mode;
truncation still raises), other 2D files are decoded once, NIfTI images have
their header read and their compressed stream run to its end (no array is
made), DICOM and NumPy files are read. Masks are read whole: their values are
what is checked.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbuilder.protocol.index import DataIndex

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
JPEG_SUFFIXES = (".jpg", ".jpeg")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SHOWN = 5


class Unreadable(Exception):
    """The file cannot be decoded; the message says why."""


@dataclass
class ImageInfo:
    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    values: tuple[float, float] | None = None  # (min, max), read for masks only


def _pil(path: Path, as_mask: bool) -> ImageInfo:
    from PIL import Image

    try:
        with Image.open(path) as image:
            size = image.size
            if not as_mask and path.name.lower().endswith(JPEG_SUFFIXES):
                image.draft("L", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            values = None
            if as_mask:
                array = np.asarray(image)
                values = (float(array.min()), float(array.max()))
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise Unreadable(f"cannot decode it as an image ({type(err).__name__}: {err})") from None
    return ImageInfo(shape=(size[1], size[0]), values=values)


def _gzip_length(path: Path) -> int:
    total = 0
    with gzip.open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            total += len(block)
    return total


def _nifti(path: Path, as_mask: bool) -> ImageInfo:
    import nibabel as nib

    try:
        image = nib.load(path)
        header = image.header
        shape = tuple(int(s) for s in image.shape)
        spacing = tuple(float(z) for z in header.get_zooms()[:3])
        values = None
        if as_mask:
            array = np.asarray(image.dataobj)
            values = (float(array.min()), float(array.max()))
        else:
            needed = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
            length = _gzip_length(path) if path.name.lower().endswith(".gz") else path.stat().st_size
            if length < needed:
                raise Unreadable(f"it holds {length:,} bytes where its header needs {needed:,}")
    except Unreadable:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise Unreadable(f"the compressed stream ends early or is damaged ({type(err).__name__}: {err})") from None
    except Exception as err:  # nibabel's ImageFileError, HeaderDataError, ValueError, OSError
        raise Unreadable(f"cannot decode it as NIfTI ({type(err).__name__}: {err})") from None
    return ImageInfo(shape=shape[:3], spacing=spacing, values=values)


def _dicom(path: Path, as_mask: bool) -> ImageInfo:
    from medbuilder.protocol.tools.context import ToolError
    from medbuilder.protocol.tools.dicom import read_dicom_file

    try:
        pixels, meta = read_dicom_file(path)
    except ToolError as err:
        raise Unreadable(str(err).removeprefix(f"{path}: ").removeprefix(f"{path} ")) from None
    values = (float(pixels.min()), float(pixels.max())) if as_mask else None
    spacing = tuple(meta["spacing"]) if meta.get("spacing_known") else None
    return ImageInfo(shape=tuple(pixels.shape[:2]), spacing=spacing, values=values)


def _npy(path: Path, as_mask: bool) -> ImageInfo:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        values = (float(array.min()), float(array.max())) if as_mask else None
    except Exception as err:  # ValueError for a short file, OSError, UnpicklingError
        raise Unreadable(f"cannot read it as a NumPy array ({type(err).__name__}: {err})") from None
    return ImageInfo(shape=tuple(array.shape), values=values)


def inspect_file(path: Path, as_mask: bool = False) -> ImageInfo | None:
    """Decode `path` enough to know it is whole; None for a format not checked here."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return _nifti(path, as_mask)
    if name.endswith(PIL_SUFFIXES):
        return _pil(path, as_mask)
    if name.endswith(".dcm"):
        return _dicom(path, as_mask)
    if name.endswith(".npy"):
        return _npy(path, as_mask)
    return None


def _examples(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def _pairs(index: DataIndex) -> list[tuple[Path, Path | None]]:
    return [(Path(r.image), Path(r.mask) if r.mask else None) for split in ("train", "test")
            for r in getattr(index, split)]


def _mismatch(image: ImageInfo, mask: ImageInfo) -> str | None:
    if len(image.shape) == len(mask.shape) and image.shape != mask.shape:
        return f"shape {image.shape} vs mask {mask.shape}"
    if image.spacing and mask.spacing and len(image.spacing) == len(mask.spacing) \
            and not np.allclose(image.spacing, mask.spacing, rtol=1e-3, atol=1e-4):
        return f"spacing {tuple(round(s, 4) for s in image.spacing)} vs mask {tuple(round(s, 4) for s in mask.spacing)}"
    return None


def _inspect_pair(pair: tuple[Path, Path | None]) -> tuple[ImageInfo | None, ImageInfo | None, list[str]]:
    """(image info, mask info, why a file is unreadable) for one record's image and mask."""
    infos, problems = [], []
    for path, as_mask in zip(pair, (False, True)):
        if path is None or not path.is_file():
            infos.append(None)
            continue
        try:
            infos.append(inspect_file(path, as_mask))
        except Unreadable as err:
            problems.append(f"{path}: {err}")
            infos.append(None)
    return infos[0], infos[1], problems


def image_problems(index: DataIndex, run_id: str = "RUN") -> list[str]:
    """Unreadable files, empty or constant masks, image/mask shape or spacing mismatches, as feedback."""
    from concurrent.futures import ThreadPoolExecutor

    unreadable, empty, constant, mismatched = [], [], [], []
    pairs = _pairs(index)
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:  # decoders free the GIL
        inspected = list(pool.map(_inspect_pair, pairs))
    for (image_path, mask_path), (image, mask, problems) in zip(pairs, inspected):
        unreadable += problems
        if mask and mask.values and mask.values[0] == mask.values[1]:
            high = mask.values[1]
            if high != 0:
                constant.append(f"{mask_path} (every value {high:g})")
            elif index.task.value == "segmentation":  # anomaly detection: a normal image's lesion mask is empty
                empty.append(f"{mask_path} (every value 0)")
        if image and mask:
            why = _mismatch(image, mask)
            if why:
                mismatched.append(f"{image_path} {why} {mask_path}")
    return _phrase(unreadable, empty, constant, mismatched, run_id)


def _phrase(unreadable: list[str], empty: list[str], constant: list[str], mismatched: list[str],
            run_id: str) -> list[str]:
    problems = []
    if unreadable:
        problems.append(f"{len(unreadable)} indexed files cannot be read: the file is truncated or corrupted: "
                        f"{_examples(unreadable)}. The dataset itself must be fixed (agents never modify it): "
                        f"replace the file or remove it from the dataset folder, then `medbuilder resume {run_id}`")
    if empty:
        problems.append(f"{len(empty)} masks are empty (no foreground): {_examples(empty)}; pair each image with "
                        "the mask that marks its structure, or leave records with an empty mask out of the index")
    if constant:
        problems.append(f"{len(constant)} masks hold one value everywhere: {_examples(constant)}; a mask must "
                        "separate foreground from background: check that these files are masks, not images")
    if mismatched:
        problems.append(f"{len(mismatched)} image/mask pairs do not match: {_examples(mismatched)}; pair each "
                        "image with its own mask (same grid: shape and voxel spacing)")
    return problems
