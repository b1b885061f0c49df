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


BLOCK = 512  # rows of the correlation computed at once: memory grows with BLOCK x n, never n x n


def _moved(square: np.ndarray) -> list[np.ndarray]:
    """The standardised thumbnails under each of the 8 flips and quarter turns (a group closed under inverses,
    so the largest correlation over them is symmetric in the two images). Moving pixels keeps a thumbnail's
    mean and variance: they stay standardised."""
    out = []
    for turns in range(4):
        for flip in (False, True):
            moved = np.rot90(square, turns, axes=(1, 2))
            moved = moved[:, :, ::-1] if flip else moved
            out.append(np.ascontiguousarray(moved).reshape(len(square), -1))
    return out


def near_groups(thumbs: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Per thumbnail, the first index of its group (images linked by a correlation of `threshold` or more
    under some flip or quarter turn, transitively); its own index when it has no near-duplicate.

    The correlations are computed a block of rows at a time, against the columns from the block's first row
    on (the largest correlation is symmetric: the links below the diagonal are those above it); each
    block's links are reduced to its groups' spanning stars before the groups of all blocks are joined, so
    neither memory nor the number of links kept grows with n x n."""
    n = len(thumbs)
    moved = _moved(thumbs.reshape(n, THUMB, THUMB))
    stars = []
    for start in range(0, n, BLOCK):
        rows = thumbs[start:start + BLOCK]
        best = np.full((len(rows), n - start), -1.0, dtype=np.float32)
        for m in moved:
            np.maximum(best, rows @ m[start:].T / thumbs.shape[1], out=best)
        i, j = np.nonzero(best >= threshold)
        stars.append(_stars(start + i, start + j, n))
    edges = np.concatenate(stars, axis=1) if stars else np.zeros((2, 0), dtype=np.int64)
    return _first_of_group(edges[0], edges[1], n)


def _first_of_group(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Per image of n, the smallest index of its connected group under the links (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


def _stars(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """The links (i, j) replaced by one link from each linked image to its group's first image: same groups."""
    linked = np.unique(np.concatenate([i, j]))
    return np.stack([linked, _first_of_group(i, j, n)[linked]])


def _thumbnails(paths: Sequence[Path], unreadable: list[str] | None) -> np.ndarray:
    """Every file's thumbnail, decoded on all cores (PIL decodes outside the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def one(path) -> tuple[np.ndarray, str | None]:
        try:
            return thumbnail(Path(path)), None
        except Exception as err:  # PIL: OSError (truncated, unidentified), SyntaxError, ValueError
            if unreadable is None:
                raise
            blank = np.zeros(THUMB * THUMB, dtype=np.float32)  # correlates with nothing
            return blank, f"{path}: {type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        made = list(pool.map(one, paths))
    if unreadable is not None:
        unreadable += [problem for _, problem in made if problem]
    return np.stack([thumb for thumb, _ in made])


def duplicate_keys(paths: Sequence[Path], threshold: float = THRESHOLD,
                   unreadable: list[str] | None = None) -> list[list[str]]:
    """Per image, keys that copies share: its sha256 and, when it has near-duplicates, its group's key
    ("near:<i>", i the group's first image).

    With `unreadable` (a list), a file that cannot be decoded is noted there and grouped by sha256 only.
    """
    near = near_keys(paths, threshold, unreadable)
    return [[hashlib.sha256(Path(p).read_bytes()).hexdigest(), *extra] for p, extra in zip(paths, near)]


def near_keys(paths: Sequence[Path], threshold: float = THRESHOLD,
              unreadable: list[str] | None = None) -> list[list[str]]:
    """Per image, its near-duplicate group's key ("near:<i>") when it has near-duplicates, else none (the
    caller groups identical files by their digests)."""
    keys: list[list[str]] = [[] for _ in paths]
    if len(paths) > 1:
        groups = near_groups(_thumbnails(paths, unreadable), threshold)
        sizes = np.bincount(groups, minlength=len(paths))
        for i, group in enumerate(groups):
            if sizes[group] > 1:
                keys[i].append(f"near:{group}")
    return keys
