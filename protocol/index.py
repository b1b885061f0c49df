"""Index files: what the Data Engineer writes and every template reads.

An index folder holds ``train.json`` and ``test.json`` (lists of records) and, for
tasks with classes, ``label_dict.json`` (class name -> integer). Image and mask
paths are absolute. Record fields by task:

- diagnosis:          {"image": path, "label": class name}
- segmentation:       {"image": path, "mask": path}
- anomaly_detection:  {"image": path, "label": class name}  (the normal class is
                      named in label_dict; normal-only training uses those records)
                      or {"image": path, "mask": path} for lesion segmentation
- report_generation:  {"image": path, "report": text}

Any record may also carry "patient_id" (never split across train and test),
"duplicate_group" (records with one value are copies of one image: never split,
not even between training and validation) and "group" (a subgroup name used for
subgroup metrics). Where the datacard names a confounder, records may carry
"confounder" (true when the image shows it), "confounder_mask" (path of a mask of
it) and "counterfactual" (path of the same image with it added or removed).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from medbuilder.protocol.datacard import Task

REQUIRED_FIELDS: dict[Task, tuple[set[str], ...]] = {
    Task.diagnosis: ({"image", "label"},),
    Task.segmentation: ({"image", "mask"},),
    Task.anomaly_detection: ({"image", "label"}, {"image", "mask"}),
    Task.report_generation: ({"image", "report"},),
}


class IndexRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    image: str
    label: str | None = None
    mask: str | None = None
    report: str | None = None
    patient_id: str | None = None
    duplicate_group: str | int | None = None
    confounder: bool | None = None
    confounder_mask: str | None = None
    counterfactual: str | None = None
    group: str | None = None


class DataIndex(BaseModel):
    """train/test records and the label mapping, for one task."""

    task: Task
    train: list[IndexRecord]
    test: list[IndexRecord]
    label_dict: dict[str, int] = {}

    @model_validator(mode="after")
    def _fields_match_task(self) -> "DataIndex":
        shapes = REQUIRED_FIELDS[self.task]
        for split, records in (("train", self.train), ("test", self.test)):
            if not records:
                raise ValueError(f"{split}.json is empty: it needs at least one record")
            for i, rec in enumerate(records):
                present = {k for k, v in rec.model_dump().items() if v is not None}
                if not any(shape <= present for shape in shapes):
                    wanted = " or ".join(str(sorted(s)) for s in shapes)
                    raise ValueError(f"{split}.json record {i} has fields {sorted(present)}; "
                                     f"a {self.task.value} record needs {wanted}")
        return self

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            records = [r.model_dump(exclude_none=True) for r in getattr(self, split)]
            (folder / f"{split}.json").write_text(json.dumps(records, indent=1))
        if self.label_dict:
            (folder / "label_dict.json").write_text(json.dumps(self.label_dict, indent=1))

    @classmethod
    def read(cls, folder: Path | str, task: Task | str) -> "DataIndex":
        folder = Path(folder)
        def load(name: str):
            return json.loads((folder / name).read_text())

        label_file = folder / "label_dict.json"
        return cls(task=Task(task), train=load("train.json"), test=load("test.json"),
                   label_dict=load("label_dict.json") if label_file.exists() else {})
