"""Test images blanked outside their region of interest, prepared for the predictor: the counterfactuals of
``counterfactual_flip_rate`` for roi confounders (``shortcuts.py``).

The region is detected on each image as loaded (``protocol/confounders.py``: the detectors, remembered per
image across builds), everything outside it set to 0, and the rest of the predictor's chain runs in memory.
The prepared copies are kept in the preprocessed store beside the images' own entries, so later rounds and
builds with the same preprocessing read them; a few are written as PNGs for a reviewer to look at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medbuilder.review.pictures import split_chain

EXAMPLE_COUNTERFACTUALS = 8  # blanked images written as PNGs for a reviewer to look at; all are measured


def blank_outside_roi(predictor, records: list[dict], roi: str, folder: Path) -> tuple[list[tuple[str, torch.Tensor]], int]:
    """Each test image blanked outside its detected region and prepared for the predictor: (original path,
    prepared blanked image) pairs and the count skipped (not a 2D picture).

    The region is detected on the image as loaded, before any preprocessing, and the blanked image goes
    through the rest of the predictor's chain in memory: what the model would see if the file had been
    blank outside the region. The first EXAMPLE_COUNTERFACTUALS are also written to folder as PNGs. A
    prepared blanked image is kept in the store beside the image's own entry (``StoredVariants``), so later
    rounds and builds with the same preprocessing read it."""
    from medbuilder.cache.host_memo import source_digest
    from medbuilder.cache.lookup import StoredVariants
    from medbuilder.protocol.confounders import cached_roi_detector, detectors_file
    from medbuilder.review.per_image import process_map

    detector, load, rest = cached_roi_detector(roi), *split_chain(predictor)
    folder.mkdir(parents=True, exist_ok=True)
    code = source_digest(detectors_file(), __file__)
    stored = StoredVariants(predictor, f"blanked outside the {roi} region (code {code})",
                            [str(r["image"]) for r in records])

    def blanked(record: dict):
        """(the loaded image blanked outside its region, that image prepared), or None to skip it."""
        try:
            loaded = load({"image": str(record["image"])})
        except Exception:  # unreadable here: the other measures report it
            return None
        keep = _region_of(loaded["image"], detector)
        if keep is None:
            return None
        loaded["image"] = _blanked(loaded["image"], keep)
        return loaded["image"], rest(loaded)["image"]

    def made_and_stored(record: dict):
        """The prepared blanked image, made now and kept in the store (None to skip the image)."""
        made = blanked(record)
        if made is not None:
            stored.put(str(record["image"]), made[1])
        return None if made is None else made[1]

    out, first, examples = [], 0, 0
    while first < len(records) and examples < EXAMPLE_COUNTERFACTUALS:  # in order, until the examples are written
        made = blanked(records[first])
        if made is not None:
            _write_example(made[0], folder / f"{first:04d}_{Path(records[first]['image']).stem}.png")
            stored.put(str(records[first]["image"]), made[1])
            examples += 1
        out.append(None if made is None else made[1])
        first += 1
    rest_out = [stored.get(str(r["image"])) for r in records[first:]]  # made by an earlier round or build
    to_make = [i for i, image in enumerate(rest_out) if image is None]
    with process_map() as each:
        for i, image in zip(to_make, each(made_and_stored, [records[first + i] for i in to_make])):
            rest_out[i] = image
    out += rest_out
    pairs = [(str(r["image"]), x) for r, x in zip(records, out) if x is not None]
    return pairs, len(records) - len(pairs)


def _blanked(image, keep: np.ndarray):
    """The loaded image with everything outside `keep` set to 0, its metadata kept (the chain reads it)."""
    from monai.data import MetaTensor

    inside = torch.where(torch.as_tensor(np.ascontiguousarray(keep)), torch.as_tensor(image),
                         torch.zeros((), dtype=torch.as_tensor(image).dtype))
    return MetaTensor(inside, meta=image.meta) if isinstance(image, MetaTensor) else inside


def _region_of(image, detector) -> np.ndarray | None:
    """The detected region as a mask over the loaded array (channel-last colour: one mask for all channels);
    None for what is not a 2D picture."""
    array = np.asarray(image, dtype=np.float32)
    channel_last = array.ndim == 3 and array.shape[-1] in (3, 4)
    grey = _channel_mean(array) if channel_last else array
    if grey.ndim != 2:
        return None
    span = float(grey.max() - grey.min())
    region = detector((grey - grey.min()) / span if span > 0 else grey * 0)
    return np.broadcast_to(region[..., None], array.shape) if channel_last else region


def _channel_mean(array: np.ndarray) -> np.ndarray:
    """array.mean(axis=-1) for a few channels, the same values (numpy sums fewer than 8 in order, then
    divides), about 15 x faster: a reduction along a short last axis is slow in numpy."""
    total = array[..., 0].copy()
    for c in range(1, array.shape[-1]):
        total += array[..., c]
    return total / np.float32(array.shape[-1])


def _write_example(image, target: Path) -> None:
    """A blanked image as the PNG a reviewer opens (MONAI's loader holds 2D pictures transposed)."""
    from PIL import Image

    array = np.swapaxes(np.asarray(image), 0, 1)
    array = array.astype(np.uint8 if float(array.max(initial=0)) <= 255 else np.uint16)
    Image.fromarray(array).save(target, compress_level=1)
