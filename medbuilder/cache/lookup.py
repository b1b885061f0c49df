"""Host-side inference (evaluation, interpretability, `predict`) reads the images the store already holds.

An entry is made by a build's preprocessing, for files under its dataset; a path that evaluation is handed
is never turned into an entry a sandboxed script could read. The one thing host-side code adds is a
*variant* of an image the store already holds (that image blanked outside its region, re-padded to another
shape): made by medbuilder's own code from that file, kept in the same dataset's part of the store as a
chain of its own, so the next round or build reads it instead of making it again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from medbuilder.cache.digests import DigestMemo
from medbuilder.cache.keys import chain_key, item_key


def _base_chain(predictor, settings) -> tuple[object, str, list[Path]] | None:
    """(store, chain key, its folders) of the predictor's own preprocessing, or None when nothing is stored."""
    keys = getattr(predictor, "cache_keys", None)
    cfg, task = getattr(predictor, "cfg", None), getattr(predictor, "task", None)
    if not keys or not isinstance(cfg, dict) or not task or cfg.get("mask_confounder"):
        return None
    from medbuilder.cache.offer import store_for
    from medbuilder.settings import get_settings

    settings = settings or get_settings()
    store = store_for(settings)
    if not settings.preprocess_cache or not (store.root / "digests.sqlite").is_file():
        return None
    chain = chain_key(task, cfg, keys, "base")
    folders = store.chain_folders(chain)
    return (store, chain, folders) if folders else None


def _dataset_of(chain_folder: Path) -> str:
    """The dataset a stored chain was made for, as its chain.json says."""
    try:
        return str(json.loads((chain_folder / "chain.json").read_text()).get("dataset", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _load(entry: Path) -> torch.Tensor | None:
    try:
        return torch.from_numpy(np.load(entry, allow_pickle=False))
    except (OSError, ValueError):
        return None


def stored_images(predictor, paths: list[str], settings=None) -> dict[str, torch.Tensor]:
    """Path -> prepared image for the paths whose preprocessing by this predictor's configuration is stored."""
    base = _base_chain(predictor, settings) if paths else None
    if base is None:
        return {}
    store, chain, folders = base
    found, memo = {}, DigestMemo(store.root / "digests.sqlite")
    try:
        for path in paths:
            try:
                key = item_key(chain, [memo.digest(Path(path))])
            except OSError:
                continue
            for folder in folders:
                image = _load(folder / key[:2] / f"{key}.npy")
                if image is not None:
                    found[path] = image
                    break
    finally:
        memo.close()
    return found


class StoredVariants:
    """One kind of variant of the predictor's prepared images (``what``: the change and the digest of the code
    making it), for the images whose base entry the store holds. ``get`` reads the main thread's lookups;
    ``put`` may run on worker threads (it writes one file, atomically)."""

    def __init__(self, predictor, what: str, paths: list[str], settings=None):
        self.entries: dict[str, Path] = {}
        base = _base_chain(predictor, settings) if paths else None
        if base is None:
            return
        self.store, chain, folders = base
        variant = chain_key(predictor.task, predictor.cfg, predictor.cache_keys, f"variant: {what}")
        memo = DigestMemo(self.store.root / "digests.sqlite")
        try:
            for path in dict.fromkeys(paths):
                try:
                    digest = memo.digest(Path(path))
                except OSError:
                    continue
                key = item_key(chain, [digest])
                part = next((f.parent for f in folders if (f / key[:2] / f"{key}.npy").is_file()), None)
                if part is not None:  # only an image this dataset's build stored: the variant joins it there
                    self.entries[path] = part / variant / (vkey := item_key(variant, [digest]))[:2] / f"{vkey}.npy"
        finally:
            memo.close()
        for folder in {entry.parents[1] for entry in self.entries.values()}:
            self.store.describe_chain(folder.relative_to(self.store.root).as_posix(),
                                      {"task": predictor.task, "kind": f"variant: {what}",
                                       "dataset": _dataset_of(folder.parent / chain),
                                       "config": {k: predictor.cfg.get(k) for k in predictor.cache_keys}})

    def get(self, path: str) -> torch.Tensor | None:
        entry = self.entries.get(path)
        image = None if entry is None else _load(entry)
        if image is not None:
            self.store.touch([entry])  # recently used: the store's eviction keeps it longer
        return image

    def put(self, path: str, image: torch.Tensor) -> None:
        entry = self.entries.get(path)
        if entry is None:
            return
        try:
            self.store.put(entry.parents[1].relative_to(self.store.root).as_posix(), entry.stem,
                           image.detach().cpu().numpy())
        except OSError:  # a full or read-only disk costs the reuse, never the result
            pass
