"""One process that fills the preprocessed store for a built run's workspace, then reads it back; prints JSON.

Run by `medbuilder bench scale` in its own process, so that its peak memory is the store's alone:

    MEDBUILDER_CACHE_DIR=/tmp/empty python -m medbuilder.bench.cache_probe --workspace W --task diagnosis \
        --index-dir I --dataset-root R

The workspace is a copy (the offer writes its manifest there). Printed: the imports the build's process
had already made (seconds, apart), the cold fill (seconds, images made, the memory of this process and its
forked workers before it and at its peak: summed PSS every second, ``memory.py``), the warm read (seconds, images found)
and the store's size on disk.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from pathlib import Path


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file() and not f.is_symlink())


def probe(workspace: Path, task: str, index_dir: Path, dataset_root: Path) -> dict:
    import psutil

    from medbuilder.bench.memory import TreeMemory, tree_pss
    from medbuilder.cache.offer import offer
    from medbuilder.settings import get_settings

    started = time.perf_counter()
    for module in ("torch", "monai.data", "monai.transforms"):  # loaded in the build's process already
        importlib.import_module(module)
    import_s = time.perf_counter() - started
    settings = get_settings()
    before_mib = tree_pss(psutil.Process()) / 2**20
    started = time.perf_counter()
    with TreeMemory(os.getpid(), pss_every_s=1.0) as memory:
        cold = offer(workspace, task, index_dir, [dataset_root], settings)
    cold_s = time.perf_counter() - started
    peak_mib = memory.peak_bytes / 2**20
    started = time.perf_counter()
    warm = offer(workspace, task, index_dir, [dataset_root], settings)
    warm_s = time.perf_counter() - started
    return {"import_seconds": round(import_s, 2), "fill_seconds": round(cold_s, 2), "made": cold.made,
            "fill_reason": cold.reason,
            "before_mib": round(before_mib, 1), "peak_mib": round(peak_mib, 1),
            "read_seconds": round(warm_s, 2), "hits": warm.hits,
            "store_mib": round(folder_bytes(settings.resolve_cache_dir()) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--workspace", "--task", "--index-dir", "--dataset-root"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    print(json.dumps(probe(Path(args.workspace), args.task, Path(args.index_dir), Path(args.dataset_root))))


if __name__ == "__main__":
    main()
