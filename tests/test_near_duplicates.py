"""Near-duplicate groups computed a block of rows at a time are the groups of the full correlation matrix."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from flow_helpers import BR35H
from medbuilder.protocol.datasets import near_duplicates as nd


def moved_copies(thumbs: np.ndarray) -> list[np.ndarray]:
    """The thumbnails under each of the 8 quarter turns and flips (the definition's moves), flattened."""
    square = thumbs.reshape(len(thumbs), nd.THUMB, nd.THUMB)
    out = []
    for turns in range(4):
        for flip in (False, True):
            moved = np.rot90(square, turns, axes=(1, 2))
            out.append(np.ascontiguousarray(moved[:, :, ::-1] if flip else moved).reshape(len(square), -1))
    return out


def dense_best(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The largest correlation of each row with each column under the 8 moves, from the moved copies."""
    best = np.full((len(rows), len(columns)), -1.0, dtype=np.float32)
    for m in moved_copies(columns):
        best = np.maximum(best, rows @ m.T / rows.shape[1])
    return best


def dense_groups(thumbs: np.ndarray, threshold: float) -> list[int]:
    """The first image of each image's group, from the whole n x n matrix (the definition)."""
    n = len(thumbs)
    best = dense_best(thumbs, thumbs)
    np.fill_diagonal(best, -1.0)
    _, labels = connected_components(coo_matrix(best >= threshold), directed=False)
    return [int(np.flatnonzero(labels == labels[i])[0]) for i in range(n)]


def test_blockwise_groups_match_the_full_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    originals = rng.normal(size=(40, nd.THUMB, nd.THUMB)).astype(np.float32)
    copies = [np.rot90(originals[k], k % 4)[:, ::-1] + rng.normal(0, 0.05, (nd.THUMB, nd.THUMB)) for k in range(0, 40, 3)]
    chained = [originals[5] * 0.9 + originals[6] * 0.1]  # correlates with 5 (0.99), not with 6
    stack = np.concatenate([originals, np.array(copies, dtype=np.float32), np.array(chained, dtype=np.float32)])
    stack = stack[rng.permutation(len(stack))]
    thumbs = nd._standardise(stack)
    monkeypatch.setattr(nd, "BLOCK", 7)  # groups that span blocks and tiles
    monkeypatch.setattr(nd, "TILE", 5)
    groups = nd.near_groups(thumbs, nd.THRESHOLD).tolist()
    assert groups == dense_groups(thumbs, nd.THRESHOLD)
    assert len(set(groups)) == len(stack) - len(copies) - len(chained)  # every copy found, nothing else merged


def test_the_d4_parts_give_the_correlations_of_the_moved_copies():
    """The parts' bases are orthonormal and cover every pixel, and the best correlation from the parts is the
    best over the 8 moved copies: on noise, on structured images and on real Br35H thumbnails."""
    bases, signs = nd._d4_layout(nd.THUMB)
    basis = np.concatenate(bases, axis=1).astype(np.float64)
    assert basis.shape == (nd.THUMB ** 2, nd.THUMB ** 2)
    assert np.abs(basis.T @ basis - np.eye(nd.THUMB ** 2)).max() < 1e-6
    rng = np.random.default_rng(2)
    ramps = np.add.outer(np.arange(nd.THUMB), 2 * np.arange(nd.THUMB))[None] * rng.normal(size=(20, 1, 1))
    br35h = sorted(BR35H.rglob("*.jpg"))[:60]
    thumbs = np.concatenate([nd._standardise(rng.normal(size=(40, nd.THUMB, nd.THUMB))),
                             nd._standardise(ramps), np.stack([nd.thumbnail(p) for p in br35h])]).astype(np.float32)
    parts = [thumbs @ b for b in bases]
    fast = nd._best_correlation(parts, parts, signs) / thumbs.shape[1]
    assert np.abs(fast - dense_best(thumbs, thumbs)).max() < 1e-4


def test_duplicate_keys_give_one_key_per_group(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    image = (rng.random((64, 64)) * 255).astype(np.uint8)
    files = []
    for name, array in (("a", image), ("a-flipped", image[:, ::-1]), ("b", (rng.random((64, 64)) * 255).astype(np.uint8))):
        files.append(tmp_path / f"{name}.png")
        Image.fromarray(array).save(files[-1])
    keys = nd.duplicate_keys(files)
    assert keys[0][1:] == keys[1][1:] == ["near:0"] and keys[2][1:] == []
