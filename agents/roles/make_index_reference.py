"""make_index.py: write index/train.json, index/test.json and index/label_dict.json.

The Data Engineer writes this script into the run's workspace with CONFIG set
to the layout it inferred from the previews, and runs it there. Splits are
about 80/20, stratified by class, and keep together every group of files that
share content (sha256), near-duplicate images, or a patient id; a table with
its own split column keeps that split. A table's confounder columns (named in
the datacard) become the records' confounder, confounder_mask, counterfactual
and group fields.
"""

import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path

from medbuilder.protocol.datasets.near_duplicates import duplicate_keys
from medbuilder.protocol.datasets.splits import group_by_keys, stratified_group_split
from medbuilder.protocol.text_files import encoding_note, read_text

CONFIG = {}  # replaced by the Data Engineer: root, task, layout, params, label_names, normal_class

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".nii.gz", ".dcm", ".npy")
NEAR_DUPLICATE_LIMIT = 20000  # thumbnail comparison is quadratic; above this only sha256 groups
SPLIT_VALUES = {"train": "train", "training": "train", "val": "train", "valid": "train", "validation": "train",
                "dev": "train", "test": "test", "testing": "test"}  # validation images are training images here
TRUE_VALUES = ("1", "true", "yes", "y", "t")


def natural_key(path):
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def images_in(folder):
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)),
                  key=natural_key)


def strip_suffix(name):
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def folder_per_class(root, params):
    return [{"image": str(p), "label": label}
            for label, folder in params["classes"].items() for p in images_in(root / folder)]


def read_table(file):
    """Rows of a CSV/TSV (or a JSON list); a table exported in another encoding (cp1252, UTF-16) is read in it."""
    if not file.is_file():
        sys.exit(f"the table {file} does not exist: check params['table'] against the dataset's files")
    text, encoding = read_text(file)
    note = encoding_note(file, encoding)
    if note:
        print(note, file=sys.stderr)
    if file.suffix == ".json":
        return json.loads(text)
    delimiter = "\t" if file.suffix == ".tsv" else ","
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def table(root, params):
    file = root / params["table"]
    records = []
    for row in read_table(file):
        path = (file.parent / row[params["path_column"]]).resolve()
        record = {"image": str(path)}
        if params.get("label_column"):
            record["label"] = str(row[params["label_column"]]).strip()
        if params.get("report_column"):
            record["report"] = str(row[params["report_column"]]).strip()
        if params.get("patient_column") and row.get(params["patient_column"]):
            record["patient_id"] = str(row[params["patient_column"]])
        if params.get("split_column"):
            value = str(row[params["split_column"]]).strip()
            record["split"] = SPLIT_VALUES.get(value.lower(), value)
        if params.get("confounder"):
            record.update(confounder_fields(row, params["confounder"], file.parent))
        records.append(record)
    return records


def confounder_fields(row, columns, folder):
    """confounder (bool), confounder_mask and counterfactual (absolute paths), group, from the named columns."""
    fields = {}
    if columns.get("presence_column"):
        present = str(row[columns["presence_column"]]).strip().lower() in TRUE_VALUES
        fields["confounder"] = present
        fields["group"] = columns["name"] if present else "no " + columns["name"]
    for column, field in (("mask_column", "confounder_mask"), ("counterfactual_column", "counterfactual")):
        if columns.get(column) and row.get(columns[column]):
            fields[field] = str((folder / row[columns[column]]).resolve())
    return fields


def pairs_folders(root, params):
    masks = {strip_suffix(p.name): p for p in images_in(root / params["masks"])}
    records = []
    for image in images_in(root / params["images"]):
        key = strip_suffix(image.name)
        mask = masks.get(key) or next((m for k, m in masks.items() if k.startswith(key)), None)
        if mask is None:
            print(f"warning: no mask for {image.name}; left out", file=sys.stderr)
            continue
        records.append({"image": str(image), "mask": str(mask)})
    return records


def pairs_json(root, params):
    document = json.loads((root / "dataset.json").read_text())
    return [{"image": str((root / item[params["image_key"]]).resolve()),
             "mask": str((root / item[params["mask_key"]]).resolve())} for item in document["training"]]


def content_keys(paths):
    from hashlib import sha256

    return [[sha256(p.read_bytes()).hexdigest()] for p in paths]


def group_ids(records, two_d):
    paths = [Path(r["image"]) for r in records]
    keys = content_keys(paths)
    if two_d and len(paths) <= NEAR_DUPLICATE_LIMIT:
        unreadable = []
        near = duplicate_keys(paths, unreadable=unreadable)
        for problem in unreadable:  # the index check names them again, with the fix
            print(f"warning: cannot decode {problem}; grouped by content only", file=sys.stderr)
        largest = max(Counter(group_by_keys(near)).values())
        if largest <= len(paths) // 2:
            keys = near
        else:  # images so alike (e.g. generated phantoms) that thumbnails chain them into one group
            print(f"warning: near-duplicate matching put {largest} of {len(paths)} images in one group; "
                  "grouping by identical content only", file=sys.stderr)
    for key_list, record in zip(keys, records):
        if record.get("patient_id"):
            key_list.append("patient:" + record["patient_id"])
    return group_by_keys(keys)


def own_split(records):
    """is_test per record from the dataset's split column, or None where the table has none."""
    if not any("split" in r for r in records):
        return None
    splits = [r.pop("split", None) for r in records]
    unknown = sorted({str(s) for s in splits} - {"train", "test"})
    if unknown:
        sys.exit(f"split column values {unknown} are not train/val/test: map them or drop split_column")
    return [s == "test" for s in splits]


def main():
    root, task = Path(CONFIG["root"]), CONFIG["task"]
    records = globals()[CONFIG["layout"]](root, CONFIG["params"])
    if not records:
        sys.exit(f"no records found under {root} with layout {CONFIG['layout']}: check the layout parameters")
    labels = [r.get("label", "all") for r in records]
    groups = group_ids(records, CONFIG["dimension"] == "2D")
    for record, group in zip(records, groups):
        record["duplicate_group"] = group
    is_test = own_split(records)
    if is_test is None:
        is_test = stratified_group_split(labels, groups)
    train = [r for r, t in zip(records, is_test) if not t]
    test = [r for r, t in zip(records, is_test) if t]
    if task == "anomaly_detection" and CONFIG.get("normal_class"):
        train = [r for r in train if r["label"] == CONFIG["normal_class"]]
    out = Path("index")
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(train, indent=1))
    (out / "test.json").write_text(json.dumps(test, indent=1))
    names = CONFIG.get("label_names") or []
    if task in ("diagnosis", "anomaly_detection"):
        found = sorted({r["label"] for r in records})
        ordered = [n for n in names if n in found] + [n for n in found if n not in names]
        if CONFIG.get("normal_class") in ordered:
            ordered.remove(CONFIG["normal_class"])
            ordered.insert(0, CONFIG["normal_class"])
        (out / "label_dict.json").write_text(json.dumps({n: i for i, n in enumerate(ordered)}, indent=1))
    elif task == "segmentation" and names:
        (out / "label_dict.json").write_text(json.dumps({n: i for i, n in enumerate(names)}, indent=1))
    print(f"{len(records)} records: {len(train)} train, {len(test)} test -> {out.resolve()}")


if __name__ == "__main__":
    main()
