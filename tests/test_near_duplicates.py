"""Near-duplicate groups computed a block of rows at a time are the groups of the full correlation matrix."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medbuilder.protocol.datasets import near_duplicates as nd


def dense_groups(thumbs: np.ndarray, threshold: float) -> list[int]:
    """The first image of each image's group, from the whole n x n matrix (the definition)."""
    n = len(thumbs)
    best = np.full((n, n), -1.0, dtype=np.float32)
    for m in nd._moved(thumbs.reshape(n, nd.THUMB, nd.THUMB)):
        best = np.maximum(best, thumbs @ m.T / thumbs.shape[1])
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
    monkeypatch.setattr(nd, "BLOCK", 7)  # groups that span blocks
    groups = nd.near_groups(thumbs, nd.THRESHOLD).tolist()
    assert groups == dense_groups(thumbs, nd.THRESHOLD)
    assert len(set(groups)) == len(stack) - len(copies) - len(chained)  # every copy found, nothing else merged


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
