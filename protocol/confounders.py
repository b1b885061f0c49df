"""Finding confounders in images: region-of-interest detectors and image edits.

A region of interest is where the evidence should be (the head on a brain MRI
slice); what lies outside it (burnt-in text, rulers, borders) must not drive the
prediction. Detectors take a 2D float image scaled to [0, 1] and return a boolean
mask of the same shape; they are simple, inspectable image processing (Otsu
threshold, largest component, hole filling), not learned models.

The detectors are the templates' own (``templates/_common/confounders.py``, which a
workspace's ``roi`` preprocessing runs): the host finds the same region the model was
trained on, from one implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medbuilder.protocol.templates._common.confounders import ROI_DETECTORS, head_mask

__all__ = ["ROI_DETECTORS", "blank_outside", "cached_roi_detector", "detectors_file", "head_mask", "outside_roi_content",
           "roi_detector"]


def outside_roi_content(image: np.ndarray, roi: np.ndarray, level: float = 0.25) -> float:
    """Share of bright pixels (above `level`) that lie outside the region of interest."""
    bright = np.asarray(image) > level
    return float((bright & ~roi).sum() / max(1, bright.sum()))


def blank_outside(image: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The counterfactual for an outside-the-region confounder: everything outside set to 0."""
    return np.where(roi, image, 0).astype(np.asarray(image).dtype)


def roi_detector(name: str) -> Callable[[np.ndarray], np.ndarray]:
    if name not in ROI_DETECTORS:
        raise KeyError(f"unknown region-of-interest detector '{name}'; known: {', '.join(ROI_DETECTORS)}")
    return ROI_DETECTORS[name]


def detectors_file() -> str:
    """The file of the detectors' code (its digest names what their results were computed by)."""
    from medbuilder.protocol.templates._common import confounders as detectors

    return detectors.__file__


def cached_roi_detector(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """roi_detector(name), remembering each image's mask across rounds and builds (``cache/host_memo.py``)."""
    from medbuilder.cache.host_memo import memoized_detector, source_digest

    return memoized_detector(name, roi_detector(name), source_digest(detectors_file()))
