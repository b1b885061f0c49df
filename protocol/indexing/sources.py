"""Read one field of one image from a layout source: a folder name, the file name, a table, a DICOM tag.

`SourceReader.value` returns (value, None) or (None, why it is missing). Tables are read
once and indexed by the key their join uses; the rows no image used are reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from medbuilder.protocol.indexing.discover import IMAGE_EXTENSIONS, Item, extension_of, stem_of
from medbuilder.protocol.indexing.tables import TableError, read_rows
from medbuilder.protocol.layout import DicomTagSource, FileNameSource, FolderSource, SidecarSource, TableSource


def matched(regex: str | None, text: str) -> str | None:
    """The regex's value group (or its only group, or the whole match) in `text`; the text itself without a regex."""
    if regex is None:
        return text
    found = re.search(regex, text)
    if not found:
        return None
    if "value" in found.re.groupindex:
        return found.group("value")
    return found.group(1) if found.re.groups else found.group(0)


def normal_path(value: str) -> str:
    text = value.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return str(PurePosixPath(text)) if text else ""


class Table:
    """One table's rows, indexed by a key column under one join."""

    def __init__(self, dataset_root: Path, source: TableSource, notes: list[str] | None = None):
        self.source = source
        self.rows = [row for file in table_files(dataset_root, source.table)
                     for row in read_rows(file, source.sheet, source.records_key, notes)]
        self.base = PurePosixPath(source.table).parent
        self.keys: dict[str, list[int]] = defaultdict(list)
        self.lower: dict[str, list[int]] = defaultdict(list)
        self.used: set[int] = set()
        missing = [i for i, row in enumerate(self.rows) if source.key_column not in row]
        if self.rows and len(missing) == len(self.rows):
            raise KeyError(f"{source.table} has no column '{source.key_column}'; columns: {list(self.rows[0])}")
        for i, row in enumerate(self.rows):
            cell = row.get(source.key_column, "")
            if source.key_regex is not None:
                cell = matched(source.key_regex, cell) or ""
            for key in self._keys_of(cell):
                self.keys[key].append(i)
                self.lower[key.lower()].append(i)

    def _keys_of(self, cell: str) -> list[str]:
        value = normal_path(cell)
        if not value:
            return []
        join = self.source.join
        if join == "path":
            keys = [normal_path(str(self.base / value)), value] if str(self.base) != "." else [value]
            return list(dict.fromkeys(keys))
        name = PurePosixPath(value).name
        if join == "name":
            return [name]
        if join == "stem":
            # a cell may hold the stem already, and a stem may hold dots (DICOM UIDs): cut image extensions only
            return [stem_of(name) if extension_of(name) in IMAGE_EXTENSIONS else name]
        return [value]  # folder: an id that names a folder

    def item_keys(self, item: Item) -> list[str]:
        join = self.source.join
        if join == "path":
            keys = [item.rel, *(str(PurePosixPath(*item.below)),)]
        elif join == "name":
            keys = [item.name]
        elif join == "stem":
            keys = [item.stem]
        else:
            keys = list(reversed(PurePosixPath(item.rel).parts[:-1] if not item.series else PurePosixPath(item.rel).parts))
        if self.source.image_regex is None:
            return keys
        return [key for key in (matched(self.source.image_regex, k) for k in keys) if key]

    def rows_for(self, item: Item) -> list[int]:
        for key in self.item_keys(item):
            if key in self.keys:
                return self.keys[key]
        for key in self.item_keys(item):  # exports often change case (IMG_1.JPG vs img_1.jpg)
            if key.lower() in self.lower:
                return self.lower[key.lower()]
        return []

    def unused_rows(self) -> list[int]:
        return [i for i in range(len(self.rows)) if i not in self.used and self.rows[i].get(self.source.key_column)]


def _cell_value(cell: str, source: TableSource) -> tuple[str | None, str | None]:
    """(value, None) or (None, why) for one cell: the regex's group, else the source's default."""
    if not cell:
        if source.default is not None:
            return source.default, None
        return None, f"its row in {source.table} has an empty '{source.column}'"
    value = matched(source.regex, cell)
    if value:
        return value, None
    if source.default is not None:
        return source.default, None
    return None, f"'{cell}' in column '{source.column}' does not match /{source.regex}/"


def table_files(dataset_root: Path, table: str) -> list[Path]:
    """The table's file, or every file its glob matches (sorted); links are not followed out of the root."""
    if not any(c in table for c in "*?["):
        return [dataset_root / table]
    files = sorted(p for p in dataset_root.glob(table) if p.is_file() and not p.is_symlink())
    if not files:
        raise TableError(f"no file under {dataset_root} matches the table pattern '{table}'; check the layout's "
                         "'table' against the dataset's files")
    return files


class SourceReader:
    """Values of sources for items of one dataset; tables and DICOM headers are read once."""

    def __init__(self, dataset_root: Path):
        self.root = dataset_root.resolve()
        self.tables: dict[tuple, Table] = {}
        self.headers: dict[str, object] = {}
        self.conflicts: dict[str, int] = defaultdict(int)  # table -> images whose key hit rows that disagree
        self.notes: list[str] = []  # tables read in another encoding

    def table(self, source: TableSource) -> Table:
        key = (source.table, source.key_column, source.join, source.sheet, source.records_key)
        if key not in self.tables:
            self.tables[key] = Table(self.root, source, self.notes)
        return self.tables[key]

    def value(self, item: Item, source) -> tuple[str | None, str | None]:
        if isinstance(source, FolderSource):
            return self._folder(item, source)
        if isinstance(source, FileNameSource):
            value = matched(source.regex, item.name)
            return (value, None) if value else (None, f"its file name does not match /{source.regex}/")
        if isinstance(source, TableSource):
            return self._table(item, source)
        if isinstance(source, DicomTagSource):
            return self._dicom(item, source)
        if isinstance(source, SidecarSource):
            return self._sidecar(item, source)
        raise TypeError(f"unknown source {source!r}")

    def _folder(self, item: Item, source: FolderSource) -> tuple[str | None, str | None]:
        folders = item.folders
        try:
            name = folders[source.depth]
        except IndexError:
            return None, f"it has no folder at depth {source.depth} below its root (folders: {list(folders) or 'none'})"
        value = matched(source.regex, name)
        return (value, None) if value else (None, f"its folder '{name}' does not match /{source.regex}/")

    def _table(self, item: Item, source: TableSource) -> tuple[str | None, str | None]:
        table = self.table(source)
        rows = table.rows_for(item)
        if not rows:
            return None, f"no row of {source.table} has its {source.join} in column '{source.key_column}'"
        table.used.update(rows)
        if source.column not in table.rows[rows[0]]:
            return None, f"{source.table} has no column '{source.column}'; columns: {list(table.rows[rows[0]])}"
        values = {_cell_value(table.rows[i].get(source.column, ""), source) for i in rows}
        if len(values) > 1:
            self.conflicts[source.table] += 1
            return None, f"{len(rows)} rows of {source.table} match it and disagree on '{source.column}': " \
                         f"{sorted(str(v) for v in values)}"
        value, why = values.pop()
        return (value, None) if value else (None, why)

    def _header(self, item: Item):
        if item.rel not in self.headers:
            import pydicom

            path = self.root / item.rel
            if item.series:
                path = next(p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith("."))
            try:
                self.headers[item.rel] = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as err:  # not DICOM, truncated: named in the report
                self.headers[item.rel] = err
        return self.headers[item.rel]

    def _dicom(self, item: Item, source: DicomTagSource) -> tuple[str | None, str | None]:
        header = self._header(item)
        if isinstance(header, Exception):
            return None, f"its DICOM header cannot be read ({type(header).__name__}: {header})"
        tag = source.tag.strip()
        number = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),?\s*([0-9A-Fa-f]{4})\)?", tag)
        element = header.get((int(number[1], 16), int(number[2], 16))) if number else header.get(tag)
        text = str(getattr(element, "value", element) if element is not None else "").strip()
        if not text:
            return None, f"its DICOM header has no {tag}"
        value = matched(source.regex, text)
        return (value, None) if value else (None, f"its {tag} '{text}' does not match /{source.regex}/")

    def _sidecar(self, item: Item, source: SidecarSource) -> tuple[str | None, str | None]:
        path = self.root / item.rel
        side = path.parent / (item.stem + source.suffix)
        if side.is_symlink() or not side.is_file():
            return None, f"it has no {side.name} beside it"
        text = side.read_text(errors="replace").strip()
        return (text, None) if text else (None, f"{side.name} is empty")

    def resolve_path(self, value: str, source) -> Path:
        """A path value (a mask, a twin) as an absolute path: relative to the table's folder, else the root."""
        relative = normal_path(value)
        base = PurePosixPath(source.table).parent if isinstance(source, TableSource) else PurePosixPath(".")
        first = self.root / base / relative
        return first if first.exists() or str(base) == "." else self.root / relative
