"""A dataset's layout, typed: where the images are and where each record's fields come from.

The Data Engineer infers a layout from what the preview tools show (or takes the one its
datacard gives); the clinician sees it at the dataset gate and may send a corrected one;
`medbuilder.protocol.indexing` applies it and writes the index. It is written as
``layout.json`` in the run folder. Every path in it is relative to the dataset root.

A value source says where one field of a record comes from: the name of a folder on the
image's path, a part of its file name, a column of a table (CSV, TSV, Excel, a JSON list,
JSON lines) joined to the image by path, file name, stem or an id that names a folder,
a DICOM tag, or a text file next to the image.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medbuilder.protocol.task import Task

JOINS = ("path", "name", "stem", "folder")
SPLIT_VOCABULARY = {"train": "train", "training": "train", "tr": "train", "val": "train", "valid": "train",
                    "validation": "train", "validate": "train", "dev": "train", "test": "test", "testing": "test", "ts": "test",
                    "holdout": "test", "hold-out": "test"}  # validation images count as training images


def relative_path(value: str) -> str:
    """A path inside the dataset root, written with '/'; refuses absolute paths and '..'."""
    text = value.strip().replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"'{value}' leads outside the dataset root: give a path relative to it (no leading '/', "
                         "no '..')")
    return str(path) if text else "."


def checked_regex(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        compiled = re.compile(value)
    except re.error as err:
        raise ValueError(f"'{value}' is not a valid regular expression: {err}") from None
    if compiled.groups > 1 and "value" not in compiled.groupindex:
        raise ValueError(f"'{value}' has {compiled.groups} groups: use one group, or name the one that holds "
                         "the value (?P<value>...)")
    return value


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FolderSource(_Part):
    """The name of a folder on the image's path (a class folder, a patient folder, a train/test folder)."""

    kind: Literal["folder"] = "folder"
    depth: int = Field(-1, description="Which folder of the path below the image root: 0 is the first folder below "
                                       "the root, 1 the next; -1 is the folder holding the file, -2 its parent.")
    regex: str | None = Field(None, description="Applied to the folder name; its group (or the whole match) is the "
                                                "value, e.g. '^sub-(.+)$'.")

    _regex = field_validator("regex")(classmethod(lambda cls, v: checked_regex(v)))

    def describe(self) -> str:
        where = {0: "the first folder below the image root", -1: "the folder holding each file",
                 -2: "the parent of the folder holding each file"}.get(self.depth, f"the folder at depth {self.depth}")
        return where + (f", matched by /{self.regex}/" if self.regex else "")


class FileNameSource(_Part):
    """A part of the file name (a class code, a token, a patient id)."""

    kind: Literal["filename"] = "filename"
    regex: str = Field(description="Applied to the file name (no folders); its group (or the whole match) is the "
                                   "value, e.g. '^([A-Z]+)_' for a prefix code, '_(tumou?r|normal)_' for a token.")

    _regex = field_validator("regex")(classmethod(lambda cls, v: checked_regex(v)))

    def describe(self) -> str:
        return f"the file name, matched by /{self.regex}/"


class TableSource(_Part):
    """A column of a table, joined to each image by a key column."""

    kind: Literal["table"] = "table"
    table: str = Field(description="The table file relative to the dataset root: .csv, .tsv (either may be .gz), "
                                   ".xlsx, .json (a list of objects) or .jsonl; a glob ('reports/*_reports.csv') "
                                   "joins the rows of every matching file, as one table.")
    column: str = Field(description="The column (or JSON key) that holds the value.")
    key_column: str = Field(description="The column whose values find each image.")
    join: Literal["path", "name", "stem", "folder"] = Field(
        "path", description="What the key column holds: 'path' a path (relative to the table's folder or the dataset "
                            "root), 'name' a file name, 'stem' a file name without its extension, 'folder' the name of "
                            "a folder the image lies in (a patient, subject or study id).")
    regex: str | None = Field(None, description="Applied to the cell; its group (or the whole match) is the value, "
                                                "e.g. '^([^/]+)/' for the folder part of a path.")
    default: str | None = Field(None, description="The value when the cell is empty or the regex does not match it: "
                                                  "with a multi-label cell ('Effusion|Mass') and regex "
                                                  "'(?:^|\\|)(Mass)(?:\\||$)', default 'no mass' labels the rest.")
    key_regex: str | None = Field(None, description="Applied to each key cell; its group is the key, e.g. "
                                                    "'^CheXpert-v1.0-small/(.*)$' where the table's paths carry a "
                                                    "prefix the folder does not.")
    image_regex: str | None = Field(None, description="Applied to the image's side of the join (its path, name, stem "
                                                      "or folder names); its group is the key, e.g. '^s(\\d+)$' for a "
                                                      "study folder 's5041' keyed '5041', '^(\\d+)_' for a file "
                                                      "'12_IM-1.png' keyed '12'.")
    sheet: str | None = Field(None, description="Excel only: the sheet (default: the first).")
    records_key: str | None = Field(None, description="JSON object only: the key whose list holds the records "
                                                      "(MSD dataset.json: 'training').")

    _table = field_validator("table")(classmethod(lambda cls, v: relative_path(v)))
    _regex = field_validator("regex", "key_regex", "image_regex")(classmethod(lambda cls, v: checked_regex(v)))

    def describe(self) -> str:
        cut = f", matched by /{self.regex}/" if self.regex else ""
        cut += f" (else '{self.default}')" if self.default is not None else ""
        return f"column '{self.column}' of {self.table}{cut}, rows found by {self.join} in column '{self.key_column}'"


class DicomTagSource(_Part):
    """A DICOM header field of the image (the first file of a series)."""

    kind: Literal["dicom_tag"] = "dicom_tag"
    tag: str = Field(description="A keyword such as 'PatientID', 'ImageComments', 'SeriesDescription', or a tag "
                                 "number '(0010,0020)'.")
    regex: str | None = Field(None, description="Applied to the tag's text; its group (or the whole match) is the value.")

    _regex = field_validator("regex")(classmethod(lambda cls, v: checked_regex(v)))

    def describe(self) -> str:
        return f"DICOM tag {self.tag}" + (f", matched by /{self.regex}/" if self.regex else "")


class SidecarSource(_Part):
    """The text of a file next to the image with the same stem (a report in scan01.txt for scan01.png)."""

    kind: Literal["sidecar"] = "sidecar"
    suffix: str = Field(".txt", description="The side file's ending, e.g. '.txt' or '_report.txt'.")

    def describe(self) -> str:
        return f"the text of the file next to each image ending in '{self.suffix}'"


Source = Annotated[Union[FolderSource, FileNameSource, TableSource, DicomTagSource, SidecarSource],
                   Field(discriminator="kind")]


class Images(_Part):
    """Which files (or DICOM series folders) are the images."""

    roots: list[str] = Field(default_factory=lambda: ["."], description="Folders to search, relative to the dataset "
                                                                         "root ('.' is the root itself).")
    extensions: list[str] = Field(default_factory=list, description="File endings to take, e.g. ['jpg', 'png'] or "
                                                                    "['nii.gz']; empty: every image format.")
    pattern: str | None = Field(None, description="Glob each file's path below its root must match, e.g. "
                                                  "'sub-*/anat/*_T1w.nii.gz'; default: every file.")
    exclude: list[str] = Field(default_factory=list, description="Regular expressions on the path below the root: "
                                                                 "files to leave out, e.g. '_mask\\.png$'.")
    dicom_series: bool = Field(False, description="One image per folder of DICOM files (a 3D series), not one per file.")

    _roots = field_validator("roots")(classmethod(lambda cls, v: [relative_path(r) for r in v] or ["."]))

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        return [v.lower().strip().lstrip(".") for v in value if v.strip()]

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[str]) -> list[str]:
        return [checked_regex(v) for v in value]


class Masks(_Part):
    """Segmentation masks paired with the images, by folder and name or by a table column."""

    roots: list[str] = Field(default_factory=list, description="Folders holding the masks, relative to the dataset "
                                                               "root; empty: the images' own folders.")
    suffixes: list[str] = Field(default_factory=list, description="A mask's stem is the image's stem plus one of "
                                                                  "these, e.g. ['_mask', '_seg']; empty: the same stem.")
    image_suffix: str | None = Field(None, description="Removed from an image's stem before pairing, e.g. nnU-Net's "
                                                       "channel '_0000'.")
    table: TableSource | None = Field(None, description="Instead: a table column holding each image's mask path "
                                                        "(MSD dataset.json: column 'label', key 'image').")
    stem_regex: str | None = Field(None, description="Pairs by a part of the names instead: applied to the image's "
                                                     "and the mask's stems, its group is what they share, e.g. "
                                                     "'(\\d+)$' pairs img0001 with label0001.")

    _roots = field_validator("roots")(classmethod(lambda cls, v: [relative_path(r) for r in v]))
    _stem_regex = field_validator("stem_regex")(classmethod(lambda cls, v: checked_regex(v)))

    def describe(self) -> str:
        if self.table:
            return "mask paths from " + self.table.describe()
        where = ", ".join(f"{r}/" for r in self.roots) or "the images' folders"
        names = " or ".join(f"'<stem>{s}'" for s in self.suffixes) or "the same stem"
        channel = f" (image stem without '{self.image_suffix}')" if self.image_suffix else ""
        if self.stem_regex:
            return f"masks in {where} paired by /{self.stem_regex}/ on the stems"
        return f"masks in {where} named {names}{channel}"


class Confounder(_Part):
    """Where the datacard's confounder shows: presence per image, a mask of it, a twin with it toggled."""

    name: str
    presence: Source | None = Field(None, description="1/0, true/false or yes/no per image.")
    mask: Source | None = Field(None, description="A path of a mask of the confounder.")
    counterfactual: Source | None = Field(None, description="A path of the same image with the confounder toggled.")


class Choice(_Part):
    """One decision of the layout and what it rests on, for the clinician and the log."""

    part: str = Field(description="images, label, label_map, masks, patient, split, report, ...")
    choice: str
    evidence: str = ""
    alternatives: list[str] = Field(default_factory=list, description="What else could have been chosen.")


class Layout(_Part):
    """Where a dataset's images are and where each record's label, mask, report, patient and split come from."""

    version: Literal[1] = 1
    task: Task | None = Field(None, description="The task it serves; in a datacard it may be left out (any of the "
                                                "card's tasks).")
    images: Images = Field(default_factory=Images)
    label: Source | None = Field(None, description="Diagnosis and anomaly detection: where each image's class comes from.")
    label_map: dict[str, str] = Field(default_factory=dict, description="Raw label value -> the datacard's label "
                                                                         "name; a value that already is a label name "
                                                                         "(any case) needs no entry.")
    label_cross_checks: list[Source] = Field(default_factory=list, description="Other places that also hold the "
                                             "label; the index takes 'label', and the report counts disagreements.")
    masks: Masks | None = Field(None, description="Segmentation: where each image's mask is.")
    report: Source | None = Field(None, description="Report generation: where each image's report text is.")
    patient: Source | None = Field(None, description="The patient or subject id: images of one patient stay in one split.")
    group: Source | None = Field(None, description="A subgroup per image (site, scanner, sex) for subgroup metrics.")
    attributes: dict[str, Source] = Field(default_factory=dict, description="Named per-image attributes for "
                                          "subgroup metrics, e.g. {'site': ..., 'scanner': ..., 'sex': ..., 'age': "
                                          "...}: a column or a DICOM tag each.")
    split: Source | None = Field(None, description="A predefined split (train/val/test values), kept as it is.")
    split_map: dict[str, str] = Field(default_factory=dict, description="Raw split value -> 'train' or 'test' for "
                                                                         "values other than train/val/test.")
    confounder: Confounder | None = None
    evidence: list[Choice] = Field(default_factory=list, description="Why each part was chosen.")
    questions: list[str] = Field(default_factory=list, description="What could not be decided from the data; the "
                                                                   "dataset gate asks the clinician.")

    @field_validator("split_map")
    @classmethod
    def _split_values(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v not in ("train", "test")}
        if bad:
            raise ValueError(f"split_map values must be 'train' or 'test', not {bad}")
        return value

    @model_validator(mode="after")
    def _parts_for_task(self) -> "Layout":
        if self.task is None:
            return self
        needed = {Task.diagnosis: "label", Task.anomaly_detection: "label", Task.report_generation: "report",
                  Task.segmentation: "masks"}[self.task]
        if getattr(self, needed) is None and not self.questions:
            raise ValueError(f"a {self.task.value} layout needs '{needed}' (or questions saying why it is unknown)")
        return self

    @property
    def resolved(self) -> bool:
        """Whether the layout can be applied: it says where the task's target comes from."""
        if self.task is None:
            return False
        needed = {Task.diagnosis: self.label, Task.anomaly_detection: self.label, Task.report_generation: self.report,
                  Task.segmentation: self.masks}[self.task]
        return needed is not None

    def summary(self) -> list[str]:
        """One line per part, in words."""
        images = self.images
        what = "DICOM series folders" if images.dicom_series else \
            (", ".join(f".{e}" for e in images.extensions) or "image") + " files"
        lines = [f"images: {what} under {', '.join(f'{r}/' for r in images.roots)}"
                 + (f" matching {images.pattern}" if images.pattern else "")
                 + (f", leaving out /{'/, /'.join(images.exclude)}/" if images.exclude else "")]
        for part in ("label", "masks", "report", "patient", "group", "split"):
            source = getattr(self, part)
            if source is not None:
                lines.append(f"{part}: {source.describe()}")
        for name, source in self.attributes.items():
            lines.append(f"attribute {name}: {source.describe()}")
        if self.label_map:
            lines.append("label values: " + ", ".join(f"{k!r} -> {v!r}" for k, v in self.label_map.items()))
        for check in self.label_cross_checks:
            lines.append(f"label also in: {check.describe()}")
        if self.confounder:
            parts = [p for p in ("presence", "mask", "counterfactual") if getattr(self.confounder, p)]
            lines.append(f"confounder '{self.confounder.name}': {', '.join(parts)}")
        return lines
