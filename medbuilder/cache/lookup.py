"""Host-side inference (evaluation, interpretability, `predict`) reads the images the store already holds.

Only reads: an entry is made by a build's preprocessing, for files under its dataset; a path that
evaluation is handed is never turned into an entry a sandboxed script could read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medbuilder.cache.digests import DigestMemo
from medbuilder.cache.keys import chain_key, item_key


def stored_images(predictor, paths: list[str], settings=None) -> dict[str, torch.Tensor]:
    """Path -> prepared image for the paths whose preprocessing by this predictor's configuration is stored."""
    keys = getattr(predictor, "cache_keys", None)
    cfg, task = getattr(predictor, "cfg", None), getattr(predictor, "task", None)
    if not paths or not keys or not isinstance(cfg, dict) or not task or cfg.get("mask_confounder"):
        return {}
    from medbuilder.cache.offer import store_for
    from medbuilder.settings import get_settings

    settings = settings or get_settings()
    store = store_for(settings)
    if not settings.preprocess_cache or not (store.root / "digests.sqlite").is_file():
        return {}
    chain = chain_key(task, cfg, keys, "base")
    folders = store.chain_folders(chain)
    if not folders:
        return {}
    found, memo = {}, DigestMemo(store.root / "digests.sqlite")
    try:
        for path in paths:
            try:
                key = item_key(chain, [memo.digest(Path(path))])
            except OSError:
                continue
            for folder in folders:
                entry = folder / key[:2] / f"{key}.npy"
                try:
                    found[path] = torch.from_numpy(np.load(entry, allow_pickle=False))
                    break
                except (OSError, ValueError):
                    continue
    finally:
        memo.close()
    return found
