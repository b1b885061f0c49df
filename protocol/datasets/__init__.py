"""The shipped datasets: ``medbuilder data prepare NAME`` recipes and their reference splits.

Each recipe copies or derives files from installed packages (never modifying
them) into a target folder, ending with a ``.prepared.json`` manifest; each
dataset has one datacard in ``datacards/`` whose ``prepare`` field names it.

===================  =========  ==================================================
recipe               kind       layout
===================  =========  ==================================================
br35h                real       yes/*.jpg, no/*.jpg (folder per class)
br35h-heldout        real       labels.csv + images/*.jpg (300 Br35H files kept out of br35h)
iu-xray-reports      real       reports.json + xml/*.xml (text only, no images)
brain-mask-3d        real       images/*.nii.gz + masks/*.nii.gz (+ atlas/)
synth-seg3d          generated  dataset.json + imagesTr/ + labelsTr/ (MSD style)
synth-cxr-reports    generated  metadata.csv + images/*.png (CSV of paths, labels)
synth-cxr-drain      generated  labels.csv (split column) + images/, masks/, twins/ *.png
===================  =========  ==================================================

Example::

    from medbuilder.protocol.datasets import prepare, reference_index
    root = prepare("br35h", Path("data/br35h"), limit=20)
    index = reference_index("br35h", root, "diagnosis")
    index.write(Path("runs/demo/index"))
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import Callable

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import Item, NoImagesError, Recipe, SourceMissingError
from medbuilder.protocol.datasets.engine import MANIFEST, read_manifest, run
from medbuilder.protocol.index import DataIndex

# imported when RECIPES is first read: the generators need scipy, and the indexer, which imports this
# package for near_duplicates, needs none of them
RECIPE_MODULES = ("br35h", "br35h_heldout", "iu_xray", "brain_mask", "synth_seg3d", "synth_cxr", "synth_cxr_drain")


@lru_cache(maxsize=1)
def _recipes() -> dict[str, Recipe]:
    modules = [import_module(f"{__name__}.{m}") for m in RECIPE_MODULES]
    return {m.RECIPE.name: m.RECIPE for m in modules}


def __getattr__(name: str):
    if name == "RECIPES":
        return _recipes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["RECIPES", "Recipe", "Item", "prepare", "reference_index", "get_recipe", "read_manifest",
           "MANIFEST", "SourceMissingError", "NoImagesError"]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a KeyError lists the valid names."""
    try:
        return _recipes()[name]
    except KeyError:
        raise KeyError(f"unknown dataset recipe '{name}'. Valid names: {', '.join(sorted(_recipes()))}") from None


def prepare(name: str, target: Path, limit: int | None = None, *, force: bool = False,
            echo: Callable[[str], None] = print, on_item: Callable[[int, int], None] | None = None) -> Path:
    """Lay dataset ``name`` out in ``target`` and return ``target``.

    Idempotent: a complete target (matching ``.prepared.json``) is left alone and
    ``echo`` says so; a partial one is completed, keeping every file the recipe
    does not write. ``limit`` keeps a small real subset (at most N per class;
    see each recipe's ``limit_note``). ``force`` rewrites every planned file,
    even where a file of other content is in the way.
    Raises KeyError (unknown name, listing valid ones), SourceMissingError (names
    the package to install), FileExistsError (a foreign file is in the way).
    ``on_item(done, total)`` is called after each file (a progress bar's).
    """
    recipe = get_recipe(name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of items per class, got {limit}")
    return run(recipe, Path(target), limit, force, echo, on_item)


def reference_index(name: str, root: Path, task: Task | str) -> DataIndex:
    """The hand-written reference split (the dataset's own split where it defines one;
    otherwise seed 0, about 80/20, stratified by class, duplicates kept on one side) of
    the prepared dataset in ``root``, for ``task``.
    Paths in the index are absolute."""
    return get_recipe(name).index(Path(root), task)
