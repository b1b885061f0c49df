"""Checks on a data index: what the Data Engineer's output must satisfy.

Each check returns problems phrased as feedback an agent can act on: what is
wrong, an example, and what to do. An empty list means the index passes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ValidationError

from medbuilder.protocol.image_checks import image_problems
from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.manifest import sha256_of

PATH_FIELDS = ("image", "mask")


class IndexReport(BaseModel):
    task: str
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]] = {}
    problems: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems


def _paths(index: DataIndex, split: str) -> list[Path]:
    records = getattr(index, split)
    return [Path(getattr(r, f)) for r in records for f in PATH_FIELDS if getattr(r, f)]


def _is_series(path: Path) -> bool:
    """A folder holding one DICOM series counts as one image."""
    return path.is_dir() and not path.is_symlink() and any(f.is_file() for f in path.iterdir())


def _path_problems(index: DataIndex, root: Path) -> list[str]:
    problems = []
    for split in ("train", "test"):
        paths = _paths(index, split)
        missing = [p for p in paths if not (p.is_file() or _is_series(p))]
        outside = [p for p in paths if not p.resolve().is_relative_to(root)]
        if missing:
            problems.append(f"{len(missing)} paths in {split}.json do not exist, e.g. {missing[0]}; "
                            "write absolute paths of files that are in the dataset")
        if outside:
            problems.append(f"{len(outside)} paths in {split}.json lie outside the dataset root {root}, "
                            f"e.g. {outside[0]}; index only files under the dataset root")
    return problems


def _label_problems(index: DataIndex, label_names: list[str]) -> list[str]:
    problems = []
    labels = {split: [r.label for r in getattr(index, split) if r.label is not None] for split in ("train", "test")}
    if not any(labels.values()):
        return problems
    unknown = sorted({lab for split in labels.values() for lab in split} - set(index.label_dict))
    if unknown:
        problems.append(f"labels {unknown[:5]} are not keys of label_dict.json {index.label_dict}; "
                        "every record's label must be a label_dict key")
    if sorted(index.label_dict.values()) != list(range(len(index.label_dict))):
        problems.append(f"label_dict.json values {sorted(index.label_dict.values())} must be 0..{len(index.label_dict) - 1}")
    if label_names and not set(index.label_dict) <= set(label_names):
        seen = sorted(set(index.label_dict))[:6]
        problems.append(f"the index labels {seen} are not the datacard's label names {label_names}: "
                        "the labels were read from the wrong column or folder; find the column or folder "
                        f"whose values are {label_names} and read the labels from it")
    if index.task.value == "anomaly_detection":
        normal = min(index.label_dict, key=index.label_dict.get) if index.label_dict else None
        others = sorted(set(labels["train"]) - {normal})
        if others:
            problems.append(f"anomaly_detection trains on the normal class only: train.json holds {others}; "
                            f"keep only '{normal}' (label 0) records in train.json")
        required = {"train": [normal], "test": list(index.label_dict)}
    else:
        required = {"train": list(index.label_dict), "test": list(index.label_dict)}
    for split, names in required.items():
        for name in names:
            if name not in labels[split]:
                problems.append(f"class '{name}' has no record in {split}.json; split each class about 80/20")
    return problems


def _overlap_problems(index: DataIndex) -> list[str]:
    problems = []
    train, test = _paths(index, "train"), _paths(index, "test")
    shared = set(map(str, train)) & set(map(str, test))
    if shared:
        problems.append(f"{len(shared)} files are in both train.json and test.json, e.g. {sorted(shared)[0]}; "
                        "each file must be in one split only")
    existing = [p for p in train + test if p.is_file()]
    digests = {p: sha256_of(p) for p in existing}
    train_digests = {digests[p] for p in train if p in digests}
    same = [p for p in test if p in digests and digests[p] in train_digests and str(p) not in shared]
    if same:
        problems.append(f"{len(same)} test images are byte-identical to train images, e.g. {same[0]}; "
                        "group files by content hash (sha256) and keep each group in one split")
    patients = {split: {r.patient_id for r in getattr(index, split) if r.patient_id} for split in ("train", "test")}
    both = patients["train"] & patients["test"]
    if both:
        problems.append(f"{len(both)} patients have records in both splits, e.g. {sorted(both)[0]}; split by patient_id")
    return problems


def check_index(index_dir: Path, task: str, dataset_root: Path, label_names: list[str] = (),
                run_id: str = "RUN") -> IndexReport:
    """Schema, paths, labels, leakage, files that cannot be decoded, masks. The report's problems are the feedback.

    `run_id` names the run in the fix for a corrupted file (`medbuilder resume RUN_ID`).
    """
    try:
        index = DataIndex.read(index_dir, task)
    except FileNotFoundError as err:
        return IndexReport(task=task, counts={}, problems=[f"{Path(err.filename).name} is missing in {index_dir}; "
                                                           "write train.json and test.json there"])
    except (ValidationError, ValueError) as err:
        return IndexReport(task=task, counts={}, problems=[f"the index does not follow the schema: {err}"])
    root = Path(dataset_root).resolve()
    problems = _path_problems(index, root) + _label_problems(index, list(label_names)) + _overlap_problems(index)
    problems += image_problems(index, run_id)
    class_counts = {split: dict(Counter(r.label for r in getattr(index, split) if r.label)) for split in ("train", "test")}
    return IndexReport(task=task, counts={"train": len(index.train), "test": len(index.test)},
                       class_counts=class_counts if any(class_counts.values()) else {}, problems=problems)
