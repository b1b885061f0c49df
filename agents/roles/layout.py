"""Infer a dataset's layout from what the preview tools showed.

Pure functions over the preview results, so the Data Engineer's offline policy
decides from the same observations an LLM would read. Layout kinds:
folder per class, a table of paths (+ labels or report text), image/mask folder
pairs, and a JSON list of image/mask pairs (MSD / nnU-Net ``dataset.json``).
A table may also hold a predefined train/test split and the datacard's confounder
columns (presence, mask, counterfactual image); both go into the layout's params.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".nii.gz", ".dcm", ".npy", ".mha", ".nrrd")
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
IMAGE_DIRS = ("images", "imagestr", "image", "imgs", "img", "scans", "volumes")
MASK_DIRS = ("masks", "labelstr", "labels", "mask", "seg", "segmentations", "annotations")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "diagnosis", "finding", "findings", "target", "category", "y")
REPORT_COLUMN_NAMES = ("report", "report_text", "text", "findings", "impression", "caption")
PATIENT_COLUMN_NAMES = ("patient_id", "patient", "subject", "subject_id", "case_id")
SPLIT_COLUMN_NAMES = ("split", "set", "subset", "fold", "partition")
# a predefined split's values; validation images count as training images (the templates hold out their own)
SPLIT_VALUES = {"train": "train", "training": "train", "val": "train", "valid": "train", "validation": "train",
                "dev": "train", "test": "test", "testing": "test"}
NORMAL_NAMES = ("no", "normal", "healthy", "negative", "none", "control", "no_finding", "no finding")


@dataclass
class Layout:
    kind: str
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class LayoutError(ValueError):
    """The previews do not show a layout the policy knows; the message says what was seen."""


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def folder_per_class(folders: dict[str, list[str]], label_names: list[str]) -> Layout | None:
    """Sub-folders named like the classes, holding images."""
    wanted = {n.lower(): n for n in label_names}
    classes = {wanted[f.lower()]: f for f, exts in folders.items() if f.lower() in wanted and any(map(is_image, exts))}
    if len(classes) >= 2:
        return Layout("folder_per_class", {"classes": classes}, [f"class folders: {classes}"])
    return None


def image_mask_folders(folders: dict[str, list[str]]) -> Layout | None:
    images = next((f for f in folders if f.lower() in IMAGE_DIRS), None)
    masks = next((f for f in folders if f.lower() in MASK_DIRS), None)
    if images and masks:
        return Layout("pairs_folders", {"images": images, "masks": masks}, [f"images in {images}/, masks in {masks}/"])
    return None


def _path_column(columns: list[str], rows: list[list[str]]) -> str | None:
    for i, column in enumerate(columns):
        if rows and all(i < len(r) and is_image(r[i]) for r in rows):
            return column
    return None


def _by_name(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower().strip(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _by_values(columns: list[str], rows: list[list[str]], label_names: list[str]) -> str | None:
    allowed = {n.lower() for n in label_names}
    for i, column in enumerate(columns):
        values = {r[i].strip().lower() for r in rows if i < len(r)}
        if values and values <= allowed:
            return column
    return None


def _longest_text(columns: list[str], rows: list[list[str]], skip: set[str]) -> str | None:
    lengths = {c: sum(len(r[i]) for r in rows if i < len(r)) for i, c in enumerate(columns) if c not in skip}
    return max(lengths, key=lengths.get) if lengths else None


def split_column(columns: list[str], rows: list[list[str]]) -> str | None:
    """A column named like a split whose shown values are all split names (train, val, test...)."""
    column = _by_name(columns, SPLIT_COLUMN_NAMES)
    if column is None:
        return None
    i = columns.index(column)
    values = {r[i].strip().lower() for r in rows if i < len(r)}
    return column if values and values <= set(SPLIT_VALUES) else None


def confounder_columns(columns: list[str], confounders: list[dict]) -> dict | None:
    """The first datacard confounder whose metadata columns the table has: its name and those columns."""
    kinds = ("presence_column", "mask_column", "counterfactual_column")
    for confounder in confounders:
        found = {k: confounder[k] for k in kinds if confounder.get(k) in columns}
        if found:
            return {"name": confounder["name"], **found}
    return None


def table_layout(table: str, columns: list[str], rows: list[list[str]], task: str,
                 label_names: list[str], labels_by_values: bool, confounders: list[dict] = ()) -> Layout | None:
    """A CSV of image paths with a label column (or report text).

    A first attempt takes the label column by its name; after feedback that the
    labels were wrong (``labels_by_values``) it takes the column whose values are
    the datacard's label names. ``confounders`` are the datacard's (as dicts).
    """
    path_column = _path_column(columns, rows)
    if path_column is None:
        return None
    params = {"table": table, "path_column": path_column,
              "patient_column": _by_name(columns, PATIENT_COLUMN_NAMES)}
    notes = [f"{table}: image paths in column '{path_column}'"]
    params["split_column"] = split_column(columns, rows)
    if params["split_column"]:
        notes.append(f"predefined split in column '{params['split_column']}' (kept, not re-split)")
    params["confounder"] = confounder_columns(columns, list(confounders))
    if params["confounder"]:
        found = params["confounder"]
        notes.append(f"confounder '{found['name']}' in columns "
                     f"{', '.join(repr(v) for k, v in found.items() if k != 'name')}")
    if task == "report_generation":
        report = _by_name(columns, REPORT_COLUMN_NAMES) or _longest_text(columns, rows, {path_column})
        params["report_column"] = report
        notes.append(f"report text in column '{report}'")
    else:
        by_name = _by_name([c for c in columns if c != path_column], LABEL_COLUMN_NAMES)
        label = _by_values(columns, rows, label_names) if labels_by_values or not by_name else by_name
        if label is None:
            return None
        params["label_column"] = label
        how = "whose values are the datacard's label names" if label != by_name else "by its name"
        notes.append(f"labels in column '{label}' (chosen {how})")
    return Layout("table", params, notes)


def normal_class(label_names: list[str]) -> str | None:
    return next((n for n in label_names if n.lower() in NORMAL_NAMES), None)
