"""What a dataset recipe is, where its real sources live, and how files are encoded.

A recipe plans a list of :class:`Item` (a relative path and where its bytes come
from); :mod:`.engine` writes them. Sources are only ever read.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.index import DataIndex


class SourceMissingError(FileNotFoundError):
    """A recipe's source files are not installed; the message names what to install."""


class NoImagesError(ValueError):
    """The dataset holds no images, so no image index can be made from it."""


@dataclass(frozen=True)
class Item:
    """One output file: ``rel`` (POSIX path inside the target) from ``source`` or ``make``."""

    rel: str
    source: Path | None = None
    make: Callable[[], bytes] | None = None

    def read(self) -> bytes:
        if self.source is not None:
            return self.source.read_bytes()
        assert self.make is not None, f"item {self.rel} has neither source nor make"
        return self.make()


@dataclass(frozen=True)
class Recipe:
    """How one shipped dataset is laid out (``medbuilder data prepare NAME``).

    ``plan(limit)`` lists the output files (raising :class:`SourceMissingError`
    when the source is absent); ``sources()`` lists the files it reads;
    ``index(root, task)`` builds the reference split from a prepared folder.
    ``version`` changes whenever the output bytes change, so an old target is redone.
    """

    name: str
    version: str
    summary: str
    tasks: tuple[Task, ...]
    generated: bool
    source: str
    plan: Callable[[int | None], list[Item]]
    sources: Callable[[], list[Path]]
    index: Callable[[Path, Task], DataIndex]
    limit_note: str = field(default="limit: at most N items per class")


# --------------------------------------------------------------------- sources

def package_data(package: str, *parts: str, hint: str = "") -> Path:
    """A folder or file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SourceMissingError(f"the Python package '{package}' is not installed. "
                                 f"Install it with `pip install {hint or package}`")
    base = Path(spec.submodule_search_locations[0]) if spec.submodule_search_locations else Path(spec.origin).parent
    path = base.joinpath(*parts)
    if not path.exists():
        raise SourceMissingError(f"{path} is missing from the installed '{package}'. "
                                 f"Reinstall it with `pip install --force-reinstall {hint or package}`")
    return path


def debian_file(path: str, package: str) -> Path:
    """A file installed by a Debian package."""
    found = Path(path)
    if not found.is_file():
        raise SourceMissingError(f"{found} is missing: the Debian package '{package}' is not installed. "
                                 f"Install it with `sudo apt-get install {package}`, then run prepare again")
    return found


def check_task(recipe: Recipe, task: Task | str) -> Task:
    try:
        wanted = Task(task)
    except ValueError:
        raise ValueError(f"unknown task '{task}'. Tasks: {', '.join(t.value for t in Task)}") from None
    if wanted not in recipe.tasks:
        raise ValueError(f"dataset '{recipe.name}' has no reference split for task '{wanted.value}'. "
                         f"Its tasks: {', '.join(t.value for t in recipe.tasks)}")
    return wanted


def check_root(recipe: Recipe, root: Path, *required: str) -> Path:
    root = Path(root).resolve()
    missing = [r for r in required if not (root / r).exists()]
    if missing:
        raise FileNotFoundError(f"{root} is not a prepared '{recipe.name}' folder ({', '.join(missing)} missing). "
                                f"Run `medbuilder data prepare {recipe.name}` first")
    return root


# -------------------------------------------------------------------- encoders

def gzip_bytes(data: bytes) -> bytes:
    """gzip with a zero timestamp, so the same content always gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def nifti_gz(array: np.ndarray, affine: np.ndarray, header=None, description: str = "") -> bytes:
    """A ``.nii.gz`` file's bytes (deterministic); ``description`` goes in the header (80 chars)."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine, header=header)
    img.set_data_dtype(array.dtype)
    if description:
        img.header["descrip"] = description.encode()[:79]
    return gzip_bytes(img.to_bytes())


def png(array: np.ndarray) -> bytes:
    """A grayscale uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
