"""Split the records and write the index: ``train.json``, ``test.json``, ``label_dict.json`` and the report.

A predefined split is kept. Otherwise about 80/20, stratified by class, keeping together
every group of files that share content (sha256), near-duplicate 2D images, or a patient id.
For anomaly detection the training side keeps only the normal class.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from medbuilder.protocol.splits import group_by_keys, stratified_group_split
from medbuilder.protocol.indexing.report import IndexingReport

NEAR_DUPLICATE_LIMIT = 20000  # thumbnail comparison is quadratic; above this only sha256 groups
PIL_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


def content_key(path: Path) -> str:
    """sha256 of a file; of a DICOM series folder, sha256 over its files' digests in name order."""
    if path.is_dir():
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()]
        return hashlib.sha256("".join(digests).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _near_duplicate_keys(paths: list[Path], keys: list[list[str]], warn) -> None:
    from medbuilder.protocol.datasets.near_duplicates import near_keys

    chosen = [i for i, p in enumerate(paths) if p.suffix.lower() in PIL_FORMATS]
    if len(chosen) < 2 or len(chosen) > NEAR_DUPLICATE_LIMIT:
        return
    unreadable: list[str] = []
    near = near_keys([paths[i] for i in chosen], unreadable=unreadable)  # the digests are in keys already
    for problem in unreadable:  # the index check names them again, with the fix
        warn(f"cannot decode {problem}; grouped by content only")
    largest = max(Counter(group_by_keys(near)).values())
    if largest > len(chosen) // 2:  # images so alike (generated phantoms) that thumbnails chain them together
        warn(f"near-duplicate matching put {largest} of {len(chosen)} images in one group; "
             "grouping by identical content only")
        return
    for i, extra in zip(chosen, near):
        keys[i] += [f"near:{chosen[int(k.split(':')[1])]}" for k in extra]


def group_ids(records: list[dict], two_d: bool, warn=lambda text: None) -> list[int]:
    paths = [Path(r["image"]) for r in records]
    keys = [[content_key(p)] for p in paths]
    if two_d:
        _near_duplicate_keys(paths, keys, warn)
    for key_list, record in zip(keys, records):
        if record.get("patient_id"):
            key_list.append("patient:" + record["patient_id"])
    return group_by_keys(keys)


def label_dict(task: str, records: list[dict], names: list[str], normal: str | None) -> dict[str, int]:
    if task in ("diagnosis", "anomaly_detection"):
        found = {r["label"] for r in records}
        ordered = [n for n in names if n in found] + sorted(found - set(names))
        if normal in ordered:
            ordered.remove(normal)
            ordered.insert(0, normal)
        return {n: i for i, n in enumerate(ordered)}
    if task == "segmentation" and names:
        return {n: i for i, n in enumerate(names)}
    return {}


def split_records(records: list[dict], task: str, dimension: str, normal: str | None,
                  warn=lambda text: None) -> tuple[list[dict], list[dict]]:
    groups = group_ids(records, dimension == "2D", warn)
    for record, group in zip(records, groups):
        record["duplicate_group"] = group
    if any("split" in r for r in records):
        is_test = [r.pop("split") == "test" for r in records]
    else:
        is_test = stratified_group_split([r.get("label", "all") for r in records], groups)
    train = [r for r, t in zip(records, is_test) if not t]
    test = [r for r, t in zip(records, is_test) if t]
    if task == "anomaly_detection" and normal:
        train = [r for r in train if r["label"] == normal]
    return train, test


def write_json(path: Path, data) -> None:
    """Atomic, and never through a link an agent may have left at that name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def write_index(records: list[dict], report: IndexingReport, out: Path, task: str, dimension: str,
                label_names: list[str], normal: str | None) -> IndexingReport:
    """Split `records`, write the index and the report under `out`; returns the report with the split counts."""
    out.mkdir(parents=True, exist_ok=True)
    train, test = split_records(records, task, dimension, normal, warn=lambda text: print("warning:", text,
                                                                                          file=sys.stderr))
    write_json(out / "train.json", train)
    write_json(out / "test.json", test)
    labels = label_dict(task, records, label_names, normal)
    if labels:
        write_json(out / "label_dict.json", labels)
    else:
        (out / "label_dict.json").unlink(missing_ok=True)
    report.train, report.test = len(train), len(test)
    write_json(out / "indexing_report.json", report.model_dump(mode="json"))
    return report
