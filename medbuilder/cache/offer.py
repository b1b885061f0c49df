"""Before a workspace's script runs: preprocess its images once, with medbuilder's own code, into the store.

The workspace's code must be medbuilder's template code unedited (sha256, as for host-side inference);
then medbuilder stages its own copy of the template, reads config.json and the run's index as data, and
runs the template's deterministic transforms (load, channels, scale, roi, crop, resize) on every image
the script will read that the store does not hold yet. It writes ``preprocessed.json`` into the
workspace: which entry holds each image, and the configuration they were made for. The script loads
those entries (read-only: the store is a read-only root of the sandbox) and preprocesses anything
else itself. Edited code, an unknown configuration or a file outside the dataset gets no entries.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.cache.digests import DigestMemo, inside_without_links
from medbuilder.cache.keys import chain_key, dataset_part, item_key
from medbuilder.cache.store import ENTRY, PreprocessStore
from medbuilder.review.per_image import process_map

MANIFEST = "preprocessed.json"
SIBLINGS = ("common", "engine", "confounders", "dataloader", "model", "predict_common")


@dataclass
class Offer:
    """What one offer did: entries found, entries made, items it could not serve, and why none at all."""

    hits: int = 0
    made: int = 0
    skipped: int = 0
    seconds: float = 0.0
    reason: str | None = None  # set when no manifest was written
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.reason:
            return f"preprocessed cache: not used ({self.reason})"
        return (f"preprocessed cache: {self.hits} images found, {self.made} preprocessed now"
                + (f", {self.skipped} left to the script" if self.skipped else "") + f" ({self.seconds:.1f} s)")


def store_for(settings) -> PreprocessStore:
    return PreprocessStore(settings.resolve_cache_dir(), int(settings.cache_max_gb * (1 << 30)))


def offer(workspace: Path, task: str, index_dir: Path, dataset_roots: list[Path], settings) -> Offer:
    started = time.monotonic()
    workspace = Path(workspace)
    manifest = workspace / MANIFEST
    if os.path.lexists(manifest):
        manifest.unlink()  # a stale (or planted) manifest never outlives the call that made it
    if not settings.preprocess_cache:
        return Offer(reason="turned off (MEDBUILDER_PREPROCESS_CACHE=false)")
    from medbuilder.review.trusted_code import edited_files

    edited = edited_files(workspace, task)
    if edited:
        return Offer(reason=f"{', '.join(edited)} differ from medbuilder's template; the script preprocesses itself")
    cfg = _config(workspace)
    if cfg is None:
        return Offer(reason="config.json is missing or not a JSON object")
    result = _fill(task, cfg, Path(index_dir), dataset_roots, store_for(settings), manifest)
    result.seconds = time.monotonic() - started
    return result


def _config(workspace: Path) -> dict | None:
    from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow

    try:
        cfg = json.loads(read_text_nofollow(workspace, "config.json"))
    except (OSError, UntrustedFileError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _fill(task: str, cfg: dict, index_dir: Path, roots: list[Path], store: PreprocessStore, manifest: Path) -> Offer:
    from medbuilder.review.trusted_code import IMPORTING

    with IMPORTING, tempfile.TemporaryDirectory(prefix="medbuilder-preprocess-") as folder:
        template = _trusted_dataloader(task, Path(folder))
        if "CACHE_KEYS" not in template:
            return Offer(reason=f"the {task} template does not cache its preprocessing")
        try:
            copied = _copy_index(index_dir, Path(folder) / "index")
            plan = template["preprocessing_plan"]({**cfg, "index_dir": str(copied)})
        except (SystemExit, KeyError, ValueError, TypeError, OSError) as err:
            return Offer(reason=f"the configuration or the index cannot be read ({err})")
        result, entries = Offer(), {}
        memo = DigestMemo(store.ensure() / "digests.sqlite")
        try:
            for kind, (chain, items) in plan.items():
                entries[kind] = _kind_entries(task, cfg, template, kind, chain, items, roots, store, memo, result)
        finally:
            memo.close()
    used = {p for kind in entries.values() for p in kind.values()}
    store.touch(used)
    store.evict(keep=used)
    config = {key: cfg.get(key) for key in template["CACHE_KEYS"]}
    body = {"version": 1, "store": str(store.root), "config": config, "entries": entries}
    partial = manifest.with_name(manifest.name + ".partial")
    partial.write_text(json.dumps(body), encoding="utf-8")
    os.replace(partial, manifest)
    return result


INDEX_FILES = ("train.json", "test.json", "label_dict.json")


def _copy_index(index_dir: Path, target: Path) -> Path:
    """The index files, copied without following links (the index folder lies in the agents' workspace)."""
    from medbuilder.protocol.untrusted import copy_nofollow

    target.mkdir(parents=True, exist_ok=True)
    for name in INDEX_FILES:
        if os.path.lexists(index_dir / name):
            copy_nofollow(index_dir, name, target / name)
    return target


def _kind_entries(task, cfg, template, kind, chain, items, roots, store, memo, result) -> dict[str, str]:
    """Item key -> entry path for one chain, computing the entries the store lacks."""
    part = dataset_part(roots[0])
    store.part(part)
    bare = chain_key(task, cfg, template["CACHE_KEYS"], kind)
    key_of_chain = f"{part}/{bare}"  # the item keys are the same in every dataset's part
    store.describe_chain(key_of_chain, {"task": task, "kind": kind, "dataset": str(Path(roots[0]).resolve()),
                                        "config": {k: cfg.get(k) for k in template["CACHE_KEYS"]}})
    readable = [*roots, *(Path(r).resolve() for r in roots)]
    found, missing = {}, []
    folder = os.fspath(store.root / key_of_chain)
    for inputs, item in items:
        paths = [inside_without_links(p, readable) for p in inputs]
        if any(p is None for p in paths):
            result.skipped += 1
            continue
        key_of_item = item_key(bare, [memo.digest(p) for p in paths])
        entry = f"{folder}/{key_of_item[:2]}/{key_of_item}{ENTRY}"  # store.entry(), without pathlib's cost per item
        key = "\n".join(inputs)
        if os.path.isfile(entry):
            result.hits += 1
            found[key] = entry
        else:
            missing.append((key, item, key_of_item))
    memo.flush()
    transform = template["Compose"](chain)
    with process_map(max(1, int(cfg.get("num_threads") or 1))) as each:
        for key, path in zip([m[0] for m in missing], each(lambda m: _make(store, key_of_chain, transform, m),
                                                           missing)):
            if path is None:
                result.skipped += 1
            else:
                result.made += 1
                found[key] = str(path)
    return found


def _make(store: PreprocessStore, chain: str, transform, missing) -> Path | None:
    _, item, key = missing
    try:
        image = transform(dict(item))["image"]
    except Exception:  # an unreadable image: the script meets it and reports it in its own words
        return None
    return store.put(chain, key, image.detach().cpu().numpy())


def _trusted_dataloader(task: str, folder: Path) -> dict:
    """The namespace of medbuilder's own dataloader.py for `task`, staged in `folder` (caller holds IMPORTING)."""
    from medbuilder.review.trusted_code import write_template_code

    code = write_template_code(task, folder / task)
    saved = {name: sys.modules.pop(name) for name in SIBLINGS if name in sys.modules}
    sys.path.insert(0, str(code))
    try:
        return runpy.run_path(str(code / "dataloader.py"), run_name="medbuilder_trusted_dataloader")
    finally:
        sys.path.remove(str(code))
        for name in SIBLINGS:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
