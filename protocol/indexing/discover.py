"""Find a layout's images: files (or DICOM series folders) under its roots, never following links out.

A link is taken only when it resolves to a file inside the dataset root; links to folders are
not entered (they may lead out, or loop). Hidden files (``.DS_Store``) are skipped. A file with
no extension counts as an image when it is DICOM (``DICM`` at byte 128), as scanners often
write them.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from medbuilder.protocol.layout import Images

IMAGE_EXTENSIONS = ("nii.gz", "nii", "png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm", "dicom", "ima", "npy",
                    "mha", "mhd", "nrrd", "gif")
DICOM_EXTENSIONS = ("dcm", "dicom", "ima", "")


@dataclass(frozen=True)
class Item:
    """One image: a file, or a folder holding one DICOM series."""

    rel: str  # path relative to the dataset root, '/'-separated
    root: str  # the image root it was found under
    series: bool = False
    files: int = 1  # slices of a series

    @property
    def below(self) -> tuple[str, ...]:
        """Path parts below its image root."""
        path = PurePosixPath(self.rel)
        return path.parts if self.root == "." else path.relative_to(self.root).parts

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders between its root and the image (a series folder counts itself)."""
        return self.below if self.series else self.below[:-1]

    @property
    def name(self) -> str:
        return PurePosixPath(self.rel).name

    @property
    def stem(self) -> str:
        return stem_of(self.name) if not self.series else self.name


@dataclass
class Discovery:
    items: list[Item] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # extension -> files under the roots that are not images
    links_refused: list[str] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)


def extension_of(name: str) -> str:
    low = name.lower()
    for ext in ("nii.gz", "tar.gz", "csv.gz"):
        if low.endswith("." + ext):
            return ext
    return low.rsplit(".", 1)[1] if "." in low.strip(".") else ""


def stem_of(name: str) -> str:
    ext = extension_of(name)
    return name[: -len(ext) - 1] if ext else name


def is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _wanted(path: Path, ext: str, images: Images) -> bool:
    allowed = images.extensions or IMAGE_EXTENSIONS
    if ext in allowed:
        return True
    no_extension_dicom = ext == "" and any(e in DICOM_EXTENSIONS for e in allowed)
    return (no_extension_dicom or images.dicom_series and ext in DICOM_EXTENSIONS) and is_dicom_file(path)


def _walk(top: Path, dataset_root: Path, found: Discovery):
    """(folder, file path) pairs below `top`, links handled as the module says."""
    for folder, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (Path(folder) / d).is_symlink())
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if not (target.is_file() and target.is_relative_to(dataset_root)):
                    found.links_refused.append(str(path.relative_to(dataset_root)))
                    continue
            yield path


def _keep(below: str, images: Images, excluded: list[re.Pattern]) -> bool:
    if images.pattern and not PurePosixPath(below).match(images.pattern):
        return False
    return not any(p.search(below) for p in excluded)


def find_images(dataset_root: Path, images: Images, extra_exclude: list[str] = ()) -> Discovery:
    """Every image under the layout's roots, in path order; files that are not images are counted by type."""
    dataset_root = dataset_root.resolve()
    found = Discovery()
    excluded = [re.compile(p) for p in (*images.exclude, *extra_exclude)]
    series: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    for root_rel in images.roots:
        top = (dataset_root / root_rel).resolve()
        if not top.is_dir() or not top.is_relative_to(dataset_root):
            found.missing_roots.append(root_rel)
            continue
        for path in _walk(top, dataset_root, found):
            rel = path.relative_to(dataset_root).as_posix()
            below = path.relative_to(top).as_posix()
            ext = extension_of(path.name)
            if not _wanted(path, ext, images):
                found.ignored[ext or "(none)"] += 1
                continue
            if rel in seen or not _keep(below, images, excluded):
                continue
            seen.add(rel)
            if images.dicom_series:
                folder = path.parent.relative_to(dataset_root).as_posix()
                series[(folder, root_rel)] = series.get((folder, root_rel), 0) + 1
            else:
                found.items.append(Item(rel, root_rel))
    found.items += [Item(folder, root, series=True, files=n) for (folder, root), n in series.items()]
    return found
