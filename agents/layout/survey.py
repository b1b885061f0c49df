"""What the preview tools showed of a dataset, in the shape the layout inference asks questions of.

Built only from tool results: `preview_dirs` (folders, extensions, first names, name
patterns), `preview_files` (table columns and first rows) and `load_med_data` (DICOM tags).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from medbuilder.protocol.indexing.discover import IMAGE_EXTENSIONS, extension_of, stem_of

TABLE_EXTENSIONS = ("csv", "tsv", "tab", "xlsx", "xlsm", "json", "jsonl", "ndjson")
DICOM_EXTENSIONS = ("dcm", "dicom", "ima")


@dataclass
class Folder:
    rel: str  # '.' or 'a/b'
    files: int
    extensions: dict[str, int]  # without the dot; '' for files with no extension
    first_files: list[str]
    name_patterns: dict[str, int]
    files_below: int = 0

    @property
    def parts(self) -> tuple[str, ...]:
        return () if self.rel == "." else PurePosixPath(self.rel).parts

    @property
    def images(self) -> int:
        return sum(n for ext, n in self.extensions.items() if ext in IMAGE_EXTENSIONS or ext == "")

    def image_names(self) -> list[str]:
        return [f for f in self.first_files if extension_of(f) in IMAGE_EXTENSIONS or extension_of(f) == ""]


@dataclass
class TableView:
    rel: str
    columns: list[str]
    rows: list[dict[str, str]]
    total: int
    records_key: str | None = None

    def values(self, column: str) -> list[str]:
        return [r.get(column, "") for r in self.rows if r.get(column, "") != ""]


@dataclass
class Survey:
    root: str
    folders: dict[str, Folder] = field(default_factory=dict)
    tables: dict[str, TableView] = field(default_factory=dict)
    dicom_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # file rel -> tags

    @classmethod
    def from_preview(cls, root: str, preview) -> "Survey":
        survey = cls(root)
        for summary in preview.folders:
            rel = _relative(summary.folder, root)
            exts = {ext.lstrip(".") if ext else "": n for ext, n in summary.extensions.items()}
            survey.folders[rel] = Folder(rel, summary.files, exts, list(summary.first_files),
                                         dict(getattr(summary, "name_patterns", {}) or {}), summary.files_below)
        return survey

    def image_folders(self) -> list[Folder]:
        return [f for f in self.folders.values() if f.images]

    def image_extensions(self) -> Counter:
        counts = Counter()
        for folder in self.image_folders():
            for ext, n in folder.extensions.items():
                if ext in IMAGE_EXTENSIONS or ext == "":
                    counts[ext] += n
        return counts

    def is_dicom(self) -> bool:
        exts = self.image_extensions()
        dicom = sum(n for e, n in exts.items() if e in DICOM_EXTENSIONS or e == "")
        return dicom > 0 and dicom >= 0.5 * sum(exts.values())

    def table_files(self) -> list[str]:
        found = []
        for folder in self.folders.values():
            for name in folder.first_files:
                if extension_of(name) in TABLE_EXTENSIONS:
                    found.append(name if folder.rel == "." else f"{folder.rel}/{name}")
        return sorted(found, key=lambda rel: (rel.count("/"), rel))

    def add_table(self, rel: str, summary: dict) -> None:
        """A preview_files summary of a table, a JSON list or JSON lines."""
        columns, rows = list(summary.get("columns") or []), []
        if columns:
            rows = [dict(zip(columns, (str(c) for c in row))) for row in summary.get("head", [])]
        elif summary.get("type") == "array":
            rows = [_flat(r) for r in summary.get("head", []) if isinstance(r, dict)]
        elif summary.get("type") == "object":
            rows, key = _records_in_object(summary)
            self.tables[rel] = TableView(rel, _columns(rows), rows, len(rows), key) if rows else None
            if rows:
                return
        elif "records" in summary:  # JSON lines
            rows = [_flat(r) for r in summary.get("head", []) if isinstance(r, dict)]
        if rows:
            total = summary.get("rows") or summary.get("length") or summary.get("records") or len(rows)
            self.tables[rel] = TableView(rel, columns or _columns(rows), rows, total)
        self.tables = {k: v for k, v in self.tables.items() if v is not None}

    def all_names(self) -> set[str]:
        """Every file name and folder name the previews showed."""
        names = set()
        for folder in self.folders.values():
            names.update(folder.parts)
            names.update(folder.first_files)
        return names

    def stems(self) -> set[str]:
        return {stem_of(n) for f in self.image_folders() for n in f.image_names()}


def _relative(folder: str, root: str) -> str:
    path = PurePosixPath(folder)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            return str(path)
    text = str(path)
    return "." if text in ("", ".") else text


def _flat(record: dict) -> dict[str, str]:
    return {str(k): (v if isinstance(v, str) else re.sub(r"\s+", " ", str(v))) for k, v in record.items()
            if not isinstance(v, (list, dict))}


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _records_in_object(summary: dict) -> tuple[list[dict[str, str]], str | None]:
    """A JSON object holding one list of records (MSD dataset.json 'training')."""
    for key, value in zip(summary.get("keys", []), summary.get("head", [])):
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [_flat(v) for v in value[:50]], key
    return [], None
