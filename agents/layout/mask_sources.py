"""Where segmentation masks could be: an MSD/nnU-Net dataset.json list, image and mask folders side by side
(images/ and masks/, imagesTr/ and labelsTr/, a derivatives tree), or masks beside the images with a suffix."""

from __future__ import annotations

import os
from dataclasses import dataclass

from medbuilder.agents.layout.survey import Folder, Survey
from medbuilder.protocol.indexing.discover import stem_of
from medbuilder.protocol.layout import Images, Masks, TableSource

IMAGE_DIRS = ("images", "imagestr", "image", "imgs", "img", "scans", "volumes", "raw", "input", "inputs")
MASK_DIRS = ("masks", "labelstr", "labels", "mask", "seg", "segs", "segmentations", "segmentation", "annotations",
             "gt", "ground_truth", "targets", "derivatives")
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels", "_gt", "-mask", "_segmentation", "_roi", "_msk", "-seg")
TEST_ONLY_DIRS = ("imagests", "test_images", "imagests_")


@dataclass
class MaskOption:
    images: Images
    masks: Masks
    what: str


def _pair_suffixes(image_stem: str, mask_stem: str) -> tuple[str, str]:
    """(image suffix, mask suffix) that leave one key: case_000_0000 / case_000 -> ('_0000', '')."""
    prefix = os.path.commonprefix([image_stem, mask_stem]).rstrip("_-.")
    return image_stem[len(prefix):], mask_stem[len(prefix):]


def _strip(stem: str, suffix: str) -> str | None:
    return stem[: len(stem) - len(suffix)] if suffix and stem.endswith(suffix) else (stem if not suffix else None)


def best_suffixes(image_folder: Folder, mask_folder: Folder) -> tuple[str, str]:
    """The (image suffix, mask suffix) that pairs the most of the previewed names."""
    images = [stem_of(n) for n in image_folder.image_names()]
    masks = [stem_of(n) for n in mask_folder.image_names()]
    best, best_pairs = ("", ""), -1
    for image_stem in images[:5]:
        for mask_stem in masks[:5]:
            image_suffix, mask_suffix = _pair_suffixes(image_stem, mask_stem)
            keys = {_strip(m, mask_suffix) for m in masks} - {None}
            pairs = sum(_strip(i, image_suffix) in keys for i in images)
            if pairs > best_pairs:
                best, best_pairs = (image_suffix, mask_suffix), pairs
    return best


def from_dataset_json(survey: Survey) -> MaskOption | None:
    for table in survey.tables.values():
        if table.records_key and {"image", "label"} <= set(table.columns):
            values = table.values("image")
            firsts = {v.replace("./", "").split("/")[0] for v in values if "/" in v}
            roots = sorted(firsts) if firsts and all(r in survey.folders for r in firsts) else ["."]
            source = TableSource(table=table.rel, column="label", key_column="image", join="path",
                                 records_key=table.records_key)
            return MaskOption(Images(roots=roots), Masks(table=source),
                              f"{table.rel} lists image/label pairs under '{table.records_key}'")
    return None


def _mask_folder_for(image_folder: Folder, survey: Survey) -> Folder | None:
    parent = os.path.dirname(image_folder.rel)
    for rel, folder in survey.folders.items():
        name = os.path.basename(rel).lower()
        if rel != image_folder.rel and os.path.dirname(rel) == parent and name in MASK_DIRS and folder.images:
            return folder
    return None


def from_folders(survey: Survey) -> MaskOption | None:
    images, masks, suffixes = [], [], set()
    for rel, folder in sorted(survey.folders.items()):
        name = os.path.basename(rel).lower()
        if name in TEST_ONLY_DIRS or name not in IMAGE_DIRS or not folder.images:
            continue
        partner = _mask_folder_for(folder, survey)
        if partner is None:
            continue
        images.append(rel)
        masks.append(partner.rel)
        suffixes.add(best_suffixes(folder, partner))
    if not images:
        return None
    image_suffix, mask_suffix = sorted(suffixes)[0] if len(suffixes) == 1 else ("", "")
    return MaskOption(Images(roots=images), Masks(roots=masks, suffixes=[mask_suffix] if mask_suffix else [],
                                                  image_suffix=image_suffix or None),
                      f"images in {', '.join(f'{r}/' for r in images)}, masks in {', '.join(f'{m}/' for m in masks)}")


def from_suffix(survey: Survey) -> MaskOption | None:
    for suffix in MASK_SUFFIXES:
        holders = []
        for folder in survey.image_folders():
            stems = [stem_of(n) for n in folder.image_names()] + [stem_of(p) for p in folder.name_patterns]
            tagged = [s for s in stems if s.endswith(suffix)]
            if tagged and len(tagged) < len(stems):
                holders.append(folder.rel)
        if holders:
            return MaskOption(Images(), Masks(suffixes=[suffix]), f"masks beside the images, named <stem>{suffix}")
    return None


def from_derivatives(survey: Survey) -> MaskOption | None:
    """A tree whose top folder is named like masks (derivatives/, masks/) mirroring the images' tree, directly
    or below one pipeline folder (BIDS: derivatives/brainmask/sub-01/anat/)."""
    tops = {rel.split("/")[0] for rel in survey.folders if rel != "."}
    for top in sorted(tops):
        if top.lower() not in MASK_DIRS:
            continue
        mirrored = [f for rel, f in survey.folders.items() if rel.startswith(top + "/") and f.images]
        for folder in mirrored:
            parts = folder.rel.split("/")
            for skip in (1, 2):
                twin = survey.folders.get("/".join(parts[skip:]))
                if twin is not None and twin.images and not twin.rel.startswith(top):
                    root = "/".join(parts[:skip])
                    image_suffix, mask_suffix = best_suffixes(twin, folder)
                    return MaskOption(Images(), Masks(roots=[root], suffixes=[mask_suffix] if mask_suffix else [],
                                                      image_suffix=image_suffix or None),
                                      f"masks in {root}/, mirroring the images' folders")
    return None


def mask_options(survey: Survey) -> list[MaskOption]:
    found = [from_dataset_json(survey), from_derivatives(survey), from_folders(survey), from_suffix(survey)]
    return [f for f in found if f is not None]
