"""How a table's rows find their images: which column, and whether it holds paths, names, stems or ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from medbuilder.agents.layout.label_sources import looks_like_ids
from medbuilder.agents.layout.survey import Survey, TableView
from medbuilder.protocol.indexing.discover import IMAGE_EXTENSIONS, extension_of, stem_of

KEY_COLUMN_WORDS = ("path", "file", "image", "img", "filename", "file_name", "name", "scan", "id", "case", "study",
                    "patient", "subject", "participant", "series", "key")


@dataclass
class TableKey:
    column: str
    join: str  # path | name | stem | folder
    overlap: float  # share of the previewed keys seen among the previewed files or folders
    roots: list[str]  # image roots the key's paths point into (path joins), else ['.']


def _paths(values: list[str]) -> list[str]:
    return [v.strip().replace("\\", "/").removeprefix("./") for v in values]


def _common_root(table: TableView, values: list[str], survey: Survey) -> list[str]:
    base = PurePosixPath(table.rel).parent
    firsts = {PurePosixPath(v).parts[0] for v in values if "/" in v}
    if len(firsts) == 1:
        first = next(iter(firsts))
        rel = str(base / first) if str(base) != "." else first
        if rel in survey.folders:
            return [rel]
    return [str(base)] if str(base) != "." else ["."]


def key_options(table: TableView, survey: Survey) -> list[TableKey]:
    """Candidate keys, most likely first."""
    names, stems = survey.all_names(), survey.stems()
    folders = {p for f in survey.folders.values() for p in f.parts}
    options = []
    for column in table.columns:
        values = _paths(table.values(column))
        if not values:
            continue
        named = any(w in column.lower() for w in KEY_COLUMN_WORDS)
        has_ext = sum(extension_of(PurePosixPath(v).name) in IMAGE_EXTENSIONS for v in values) / len(values)
        if has_ext >= 0.8 or (named and all("/" in v for v in values)):
            seen = sum(PurePosixPath(v).name in names for v in values) / len(values)
            if all("/" in v for v in values):
                options.append(TableKey(column, "path", seen, _common_root(table, values, survey)))
            options.append(TableKey(column, "name", seen, ["."]))
            continue
        stem_seen = sum(v in stems for v in values) / len(values)
        folder_seen = sum(v in folders for v in values) / len(values)
        if stem_seen:
            options.append(TableKey(column, "stem", stem_seen, ["."]))
        if folder_seen or (named and looks_like_ids(values)):
            options.append(TableKey(column, "folder", folder_seen, ["."]))
        elif named and len(set(values)) == len(values):
            options.append(TableKey(column, "stem", stem_seen, ["."]))
    order = {"path": 0, "name": 1, "stem": 2, "folder": 3}
    return sorted(options, key=lambda k: (-k.overlap, order[k.join]))


def stems_of(names: list[str]) -> set[str]:
    return {stem_of(n) for n in names}
