"""The head detector's fast morphology gives scipy.ndimage's results exactly (masks are cached by content, so a
changed mask would be a changed preprocessing)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medbuilder.protocol.datasets import prepare
from medbuilder.protocol.templates._common.confounders import dilate, erode, fill_holes, head_mask, otsu_threshold


@pytest.mark.parametrize("shape", [(61, 70), (1, 40), (18, 25, 21), (5, 1, 7)])
def test_morphology_matches_scipy(shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for density in (0.2, 0.5, 0.8):
        x = rng.random(shape) < density
        assert np.array_equal(fill_holes(x), ndimage.binary_fill_holes(x))
        for n in (1, 3):
            assert np.array_equal(dilate(x, n), ndimage.binary_dilation(x, iterations=n))
            assert np.array_equal(erode(x, n), ndimage.binary_erosion(x, iterations=n))
            assert np.array_equal(erode(dilate(x, n), n), ndimage.binary_closing(x, iterations=n))


def scipy_head_mask(image: np.ndarray, dilate_px: int = 2) -> np.ndarray:
    """The detector as first written with scipy's morphology."""
    foreground = ndimage.binary_closing(image > max(0.04, otsu_threshold(image) * 0.3), iterations=3)
    labels, count = ndimage.label(foreground)
    sizes = ndimage.sum(foreground, labels, index=range(1, count + 1))
    mask = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    return ndimage.binary_dilation(mask, iterations=dilate_px)


def test_head_mask_is_unchanged_on_real_slices(tmp_path):
    from PIL import Image

    root = prepare("br35h", tmp_path / "br35h", limit=15, echo=lambda *_: None)
    for file in sorted(root.rglob("*.jpg")):
        image = np.asarray(Image.open(file).convert("L"), dtype=np.float32) / 255.0
        assert np.array_equal(head_mask(image), scipy_head_mask(image)), file.name
