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
from functools import cache
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


BLOCK, TILE = 256, 1024  # a block of rows against a tile of columns at a time: memory grows with neither n
# nor n x n, and the passes over a tile's products stay in cache (8,000 thumbnails: 1.2 s in blocks of 512
# rows against all columns, 0.9 s in tiles)


def near_groups(thumbs: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Per thumbnail, the first index of its group (images linked by a correlation of `threshold` or more
    under some flip or quarter turn, transitively); its own index when it has no near-duplicate.

    The correlations are computed a block of rows at a time, against the columns from the block's first row
    on (the largest correlation is symmetric: the links below the diagonal are those above it); each
    block's links are reduced to its groups' spanning stars before the groups of all blocks are joined, so
    neither memory nor the number of links kept grows with n x n."""
    n = len(thumbs)
    bases, signs = _d4_layout(int(round(np.sqrt(thumbs.shape[1]))))
    parts = [np.ascontiguousarray(thumbs @ basis) for basis in bases]
    limit = threshold * thumbs.shape[1]
    stars = []
    for start in range(0, n, BLOCK):
        rows = [p[start:start + BLOCK] for p in parts]
        links = []
        for first in range(start, n, TILE):
            i, j = np.nonzero(_best_correlation(rows, [p[first:first + TILE] for p in parts], signs) >= limit)
            links.append((start + i, first + j))
        stars.append(_stars(np.concatenate([i for i, _ in links]), np.concatenate([j for _, j in links]), n))
    edges = np.concatenate(stars, axis=1) if stars else np.zeros((2, 0), dtype=np.int64)
    return _first_of_group(edges[0], edges[1], n)


# The 8 flips and quarter turns of a square thumbnail form the group D4. Its action on the pixels splits
# into four one-dimensional parts (there a moved image's coordinates are the image's times +1 or -1) and one
# two-dimensional part, held as two blocks of coordinates (x, y) that each move mixes like the two
# coordinates of a point in the plane. A correlation under any move is then a signed sum of 8 products of
# the parts (4 over about n_pixels / 8 coordinates, 4 over n_pixels / 4), where the direct way multiplies 8
# moved copies over all n_pixels: the same values, 5 x fewer multiplications. A move and the same move
# turned twice more (a half turn negates the plane part and keeps the others) differ only in the plane
# part's sign, so the best of the 8 is the best of 4: one-dimensional sum + |plane sum|.
COSET_MOVES = ((0, False), (1, False), (0, True), (1, True))  # (quarter turns, flipped), one of each pair


def _move(square: np.ndarray, turns: int, flipped: bool) -> np.ndarray:
    moved = np.rot90(square, turns, axes=(-2, -1))
    return moved[..., ::-1] if flipped else moved


def _best_correlation(rows: list[np.ndarray], columns: list[np.ndarray], signs: list[tuple]) -> np.ndarray:
    """max over the 8 moves g of <row, g column> (not divided by the pixel count), from the parts'
    coordinates (rows and columns: the 4 one-dimensional parts, the plane's x and y; signs: _d4_layout's).
    Each coset's sum is made in place, in one buffer: with a new array per step the passes over the
    products took longer than the products."""
    one_d = [r @ c.T for r, c in zip(rows[:4], columns[:4])]
    plane = {(a, b): rows[4 + a] @ columns[4 + b].T for a in (0, 1) for b in (0, 1)}
    best, total = None, np.empty_like(one_d[0])
    for one_d_signs, (first, second, agree) in signs:
        (np.add if agree else np.subtract)(plane[first], plane[second], out=total)
        np.abs(total, out=total)
        for sign, part in zip(one_d_signs, one_d):
            (np.add if sign > 0 else np.subtract)(total, part, out=total)
        if best is None:
            best, total = total, np.empty_like(total)
        else:
            np.maximum(best, total, out=best)
    return best


@cache
def _d4_layout(side: int) -> tuple[list[np.ndarray], list[tuple]]:
    """The bases (pixels x coordinates: the 4 one-dimensional parts, then the plane part's x and y blocks),
    and per move of COSET_MOVES the sign it gives each one-dimensional part and its plane sum: the move's
    2 x 2 matrix on (x, y) has two entries of +-1, so the sum is the products of (row block, column block)
    `first` and `second`, added when the entries agree in sign and subtracted otherwise (the sum's own sign
    does not matter under abs).

    Built pixel orbit by pixel orbit: a basis vector is a projection of one pixel's indicator, so vectors of
    different orbits never overlap, and those of one orbit are made orthonormal there."""
    moves = [(t, f) for t in range(4) for f in (False, True)]
    characters = [(rt, fl) for rt in (1, -1) for fl in (1, -1)]  # sign under a quarter turn, under the flip
    one_d, xs, seen = [[] for _ in characters], [], np.zeros(side * side, dtype=bool)
    for pixel in range(side * side):
        if seen[pixel]:
            continue
        point = np.zeros((side, side))
        point.flat[pixel] = 1.0
        images = {(t, f): _move(point, t, f).ravel() for t, f in moves}
        seen[np.flatnonzero(sum(images.values()))] = True
        for basis, (rt, fl) in zip(one_d, characters):
            vector = sum(rt ** t * (fl if f else 1) * images[(t, f)] for t, f in moves)
            if np.abs(vector).sum() > 1e-9:
                basis.append(vector / np.linalg.norm(vector))
        # the plane part: (1 - half turn) / 2, then kept by the flip, of each moved indicator
        plane = [(images[(t, False)] - images[((t + 2) % 4, False)]) / 2 for t in range(4)]
        kept = np.array([(v + _move(v.reshape(side, side), 0, True).ravel()) / 2 for v in plane])
        u, singular, _ = np.linalg.svd(kept.T, full_matrices=False)
        xs += list(u[:, singular > 1e-9].T)
    x = np.array(xs).T
    y = np.stack([_move(column.reshape(side, side), 1, False).ravel() for column in x.T], axis=1)
    bases = [np.array(b).T.astype(np.float32) for b in one_d] + [x.astype(np.float32), y.astype(np.float32)]
    signs = []
    for t, f in COSET_MOVES:
        one_d_signs = tuple(rt ** t * (fl if f else 1) for rt, fl in characters)
        moved_x, moved_y = (_move(v[:, 0].reshape(side, side), t, f).ravel() for v in (x, y))
        matrix = np.rint([[x[:, 0] @ moved_x, x[:, 0] @ moved_y], [y[:, 0] @ moved_x, y[:, 0] @ moved_y]])
        (first, second), (sign_1, sign_2) = zip(*[(ab, w) for ab, w in np.ndenumerate(matrix.astype(int)) if w])
        signs.append((one_d_signs, (first, second, sign_1 == sign_2)))
    return bases, signs


def _first_of_group(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Per image of n, the smallest index of its connected group under the links (i, j): each link's ends
    take the smaller of their labels, and each label its own label's, until nothing changes (numpy only: the
    sandboxed indexer spent 0.13 s importing scipy's graph code for this)."""
    first = np.arange(n)
    while True:
        before = first.copy()
        low = np.minimum(first[i], first[j])
        np.minimum.at(first, i, low)
        np.minimum.at(first, j, low)
        first = first[first]
        if np.array_equal(first, before):
            return first


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
