"""Pair images with their masks: by folder and stem (with suffixes such as ``_mask``), or by a table column."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from medbuilder.protocol.indexing.discover import Item, find_images
from medbuilder.protocol.indexing.sources import SourceReader, matched
from medbuilder.protocol.layout import Images, Layout, Masks


def mask_excludes(layout: Layout) -> list[str]:
    """Regexes that keep mask files out of the images: masks beside images, or a mask folder inside an image root."""
    masks = layout.masks
    if masks is None or masks.table is not None:
        return []
    patterns = [rf"{re.escape(s)}\.[^/]+$" for s in masks.suffixes if not masks.roots]
    for mask_root in masks.roots:
        for image_root in layout.images.roots:
            inside = image_root == "." or PurePosixPath(mask_root).is_relative_to(image_root)
            if inside and mask_root != image_root:
                below = mask_root if image_root == "." else str(PurePosixPath(mask_root).relative_to(image_root))
                patterns.append(rf"^{re.escape(below)}/")
    return patterns


def _key(stem: str, suffixes: list[str]) -> str | None:
    if not suffixes:
        return stem
    for suffix in sorted(suffixes, key=len, reverse=True):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


class MaskFinder:
    def __init__(self, dataset_root: Path, layout: Layout, reader: SourceReader):
        self.masks: Masks = layout.masks
        self.reader = reader
        self.by_place: dict[tuple[str, str], str] = {}
        self.by_key: dict[str, list[str]] = {}
        if self.masks.table is None:
            roots = self.masks.roots or layout.images.roots
            found = find_images(dataset_root, Images(roots=roots))
            for item in found.items:
                key = self._mask_key(item.stem)
                if key is None:
                    continue
                place = "/".join(item.folders) if self.masks.roots else str(PurePosixPath(item.rel).parent)
                self.by_place[(place, key)] = item.rel
                self.by_key.setdefault(key, []).append(item.rel)
        self.root = dataset_root

    def _mask_key(self, stem: str) -> str | None:
        if self.masks.stem_regex:
            return matched(self.masks.stem_regex, stem)
        return _key(stem, self.masks.suffixes)

    def image_key(self, item: Item) -> str:
        stem = item.stem
        if self.masks.stem_regex:
            return matched(self.masks.stem_regex, stem) or stem
        suffix = self.masks.image_suffix
        return stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem

    def mask_of(self, item: Item) -> tuple[str | None, str | None]:
        """The mask's absolute path, or why there is none."""
        if self.masks.table is not None:
            value, miss = self.reader.value(item, self.masks.table)
            if value is None:
                return None, miss
            path = self.reader.resolve_path(value, self.masks.table)
            return (str(path), None) if path.is_file() else (None, f"its mask {value} does not exist")
        key = self.image_key(item)
        place = "/".join(item.folders) if self.masks.roots else str(PurePosixPath(item.rel).parent)
        rel = self.by_place.get((place, key))
        if rel is None and len(self.by_key.get(key, [])) == 1:
            rel = self.by_key[key][0]
        if rel is None or rel == item.rel:
            return None, f"no mask named {key}{'|'.join(self.masks.suffixes) or ''}.* in {self.masks.describe()}"
        return str(self.root / rel), None
