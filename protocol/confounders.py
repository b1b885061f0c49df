"""Finding confounders in images: region-of-interest detectors and image edits.

A region of interest is where the evidence should be (the head on a brain MRI
slice); what lies outside it (burnt-in text, rulers, borders) must not drive the
prediction. Detectors take a 2D float image scaled to [0, 1] and return a boolean
mask of the same shape; they are simple, inspectable image processing (Otsu
threshold, largest component, hole filling), not learned models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def head_mask(image: np.ndarray, dilate_px: int = 2) -> np.ndarray:
    """The head (or body part) on a 2D slice: the largest bright component, holes filled.

    Text and watermarks are usually small separate components, so they fall outside.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.max() <= image.min():
        return np.zeros(image.shape, dtype=bool)
    foreground = image > max(0.04, threshold_otsu(image) * 0.3)
    foreground = ndimage.binary_closing(foreground, iterations=3)  # join the scalp ring into one outline
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = ndimage.sum(foreground, labels, index=range(1, count + 1))
    mask = ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))
    return ndimage.binary_dilation(mask, iterations=dilate_px) if dilate_px else mask


def outside_roi_content(image: np.ndarray, roi: np.ndarray, level: float = 0.25) -> float:
    """Share of bright pixels (above `level`) that lie outside the region of interest."""
    bright = np.asarray(image) > level
    return float((bright & ~roi).sum() / max(1, bright.sum()))


def blank_outside(image: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The counterfactual for an outside-the-region confounder: everything outside set to 0."""
    return np.where(roi, image, 0).astype(np.asarray(image).dtype)


ROI_DETECTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"head": head_mask}


def roi_detector(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name not in ROI_DETECTORS:
        raise KeyError(f"unknown region-of-interest detector '{name}'; known: {', '.join(ROI_DETECTORS)}")
    return ROI_DETECTORS[name]
