"""Group 2D images that are copies of one another, so a split keeps each group whole.

Two images are in one group when their files have the same sha256, or when
their 32x32 grayscale thumbnails, each standardised to zero mean and unit
variance, correlate at ``THRESHOLD`` or more under any of the 8 flips and
quarter turns. Standardising makes the test blind to brightness and contrast
changes; the flips catch mirrored copies.

Why not a 16x16 average hash: on Br35H, 1,255 pairs of different axial slices
share the exact same 16x16 average hash (brains look alike at that size), so
grouping by it merges unrelated images into one giant group. The thumbnail
correlation at 0.96 finds the augmented copies (contrast changes, sharpening,
flips, re-scaled re-encodings) that Br35H is full of, without chaining unrelated
images: its largest group has 77 images, all variants of one scan, and no group
mixes the ``yes`` and ``no`` classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

THUMB = 32
THRESHOLD = 0.96


def thumbnail(path: Path, size: int = THUMB) -> np.ndarray:
    """A size x size grayscale thumbnail, standardised (float32, flattened)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (2 * size, 2 * size))  # JPEG: decode at reduced scale, much faster
        g = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return _standardise(g[None])[0]


def _standardise(stack: np.ndarray) -> np.ndarray:
    flat = stack.reshape(len(stack), -1)
    return (flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-6)


def similarity(thumbs: np.ndarray) -> np.ndarray:
    """Max correlation between thumbnails over the 8 flips and quarter turns (diagonal -1)."""
    n = len(thumbs)
    square = thumbs.reshape(n, THUMB, THUMB)
    best = np.full((n, n), -1.0, dtype=np.float32)
    for turns in range(4):
        for flip in (False, True):
            moved = np.rot90(square, turns, axes=(1, 2))
            moved = moved[:, :, ::-1] if flip else moved
            corr = thumbs @ _standardise(np.ascontiguousarray(moved)).T / thumbs.shape[1]
            np.maximum(best, np.maximum(corr, corr.T), out=best)
    np.fill_diagonal(best, -1.0)
    return best


def _thumbnails(paths: Sequence[Path], unreadable: list[str] | None) -> np.ndarray:
    thumbs = []
    for path in paths:
        try:
            thumbs.append(thumbnail(Path(path)))
        except Exception as err:  # PIL: OSError (truncated, unidentified), SyntaxError, ValueError
            if unreadable is None:
                raise
            unreadable.append(f"{path}: {type(err).__name__}: {err}")
            thumbs.append(np.zeros(THUMB * THUMB, dtype=np.float32))  # correlates with nothing
    return np.stack(thumbs)


def duplicate_keys(paths: Sequence[Path], threshold: float = THRESHOLD,
                   unreadable: list[str] | None = None) -> list[list[str]]:
    """Per image, keys that copies share: its sha256, and one key per near-duplicate pair.

    With `unreadable` (a list), a file that cannot be decoded is noted there and grouped by sha256 only.
    """
    keys = [[hashlib.sha256(Path(p).read_bytes()).hexdigest()] for p in paths]
    if len(paths) > 1:
        sim = similarity(_thumbnails(paths, unreadable))
        for i, j in np.argwhere(np.triu(sim >= threshold, 1)):
            keys[i].append(f"near:{i}")
            keys[j].append(f"near:{i}")
    return keys
