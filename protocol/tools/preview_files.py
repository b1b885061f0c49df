"""Workspace tool preview_files: the shape and first records of a large table, JSON or text file.

Files are streamed, never loaded whole: a CSV of millions of rows is counted row
by row, a JSON file is decoded one top-level item at a time (memory is bounded
by the largest single item), text is read line by line. ``.gz`` files are read
through gzip.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

from medbuilder.protocol.text_files import encoding_of, encoding_note
from medbuilder.protocol.tools.context import ToolError, Workspace, human_size, suffix_of
from medbuilder.protocol.tools.json_stream import iter_json_items

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii", ".nii.gz", ".dcm", ".npy", ".npz", ".bmp", ".gif"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
CELL_CHARS = 120
csv.field_size_limit(2**31 - 1)


@dataclass
class FilePreview:
    path: str
    kind: str
    size_bytes: int
    summary: dict
    text: str

    def as_text(self) -> str:
        return f"{self.path} ({self.kind}, {human_size(self.size_bytes)})\n{self.text}"


def preview_files(ctx: Workspace, path: str, n: int = 5) -> FilePreview:
    """Preview a large metadata file (CSV/TSV, Excel, JSON, JSONL, text or XML) without reading it whole.

    CSV/TSV and Excel (.xlsx, first sheet): the header, the first n rows and the
    total number of rows (Excel: and the sheet names). JSON: the
    top-level type, its length and keys, and the first n items (long values
    shortened). JSONL: the number of lines and the first n records. Text and XML:
    the first lines (4 x n) and the line and word counts. For images use
    load_med_data; for short code or configs use read_files.

    Args:
        path: The file, absolute or relative to the workspace.
        n: How many rows or items to show (at most 50).
    """
    file = ctx.existing(path, kind="file")
    count = max(1, min(int(n), 50))
    suffix = suffix_of(file)
    plain = suffix.removesuffix(".gz")
    if suffix in IMAGE_SUFFIXES:
        raise ToolError(f"'{path}' is an image or array file; use load_med_data to inspect it")
    if suffix in EXCEL_SUFFIXES:
        kind, summary, text = _preview_excel(file, count)
        return FilePreview(ctx.show(file), kind, file.stat().st_size, summary, ctx.cut(text, hint="ask for fewer rows (n)"))
    if _looks_binary(file):
        raise ToolError(f"'{path}' is a binary file ({human_size(file.stat().st_size)}); no text preview is possible")
    if plain in TABLE_SUFFIXES:
        kind, summary, text = _preview_table(file, TABLE_SUFFIXES[plain], count)
    elif plain in {".jsonl", ".ndjson"}:
        kind, summary, text = _preview_jsonl(file, count)
    elif plain == ".json":
        kind, summary, text = _preview_json(file, count)
    else:
        kind, summary, text = _preview_text(file, count * 4)
    return FilePreview(ctx.show(file), kind, file.stat().st_size, summary, ctx.cut(text, hint="ask for fewer rows (n)"))


def _start(file: Path, size: int = 65536) -> bytes:
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rb") as handle:
            return handle.read(size)
    except (OSError, EOFError) as err:
        raise ToolError(f"'{file}' is not a readable gzip file: {err}") from None


def _open_text(file: Path) -> io.TextIOBase:
    """Text in the encoding its start shows (UTF-8, a BOM's, UTF-16, cp1252): see protocol.text_files."""
    encoding = encoding_of(_start(file), complete=False)
    if file.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(file, "rb"), encoding=encoding, errors="replace", newline="")
    return file.open(encoding=encoding, errors="replace", newline="")


def _looks_binary(file: Path) -> bool:
    start = _start(file, 8192)
    return b"\0" in start and not encoding_of(start, complete=False).startswith(("utf-16", "utf-32"))


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + f"...({len(text)} chars)"


def _preview_table(file: Path, delimiter: str, n: int) -> tuple[str, dict, str]:
    with _open_text(file) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return "empty table", {"rows": 0}, "(the file is empty)"
        except csv.Error as err:
            raise ToolError(f"'{file}' is not valid CSV: {err}") from None
        rows, total = [], 0
        try:
            for row in reader:
                total += 1
                if len(rows) < n:
                    rows.append(row)
        except csv.Error as err:
            raise ToolError(f"'{file}' has malformed CSV at data row {total + 1}: {err}") from None
    encoding = encoding_of(_start(file), complete=False)
    summary = {"columns": header, "rows": total, "head": rows, "encoding": encoding}
    lines = [f"{len(header)} columns, {total:,} data rows (header not counted).", "columns: " + " | ".join(header)]
    lines += [note for note in (encoding_note(file, encoding),) if note]
    lines += [f"row {i + 1}: " + " | ".join(_short(c) for c in row) for i, row in enumerate(rows)]
    return "table", summary, "\n".join(lines)


def _preview_excel(file: Path, n: int) -> tuple[str, dict, str]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as err:
        raise ToolError(f"'{file}' is not a readable .xlsx workbook ({type(err).__name__}: {err})") from None
    sheet = book.worksheets[0]
    header, rows, total = [], [], 0
    for values in sheet.iter_rows(values_only=True):
        cells = ["" if v is None else str(v) for v in values]
        if not header:
            header = cells
            continue
        if not any(cells):
            continue
        total += 1
        if len(rows) < n:
            rows.append(cells)
    names = book.sheetnames
    book.close()
    summary = {"columns": header, "rows": total, "head": rows, "sheets": names}
    lines = [f"Excel workbook, sheets: {names}; sheet '{names[0]}': {len(header)} columns, {total:,} data rows.",
             "columns: " + " | ".join(header)]
    lines += [f"row {i + 1}: " + " | ".join(_short(c) for c in row) for i, row in enumerate(rows)]
    return "table", summary, "\n".join(lines)


def _preview_jsonl(file: Path, n: int) -> tuple[str, dict, str]:
    records, total, bad = [], 0, []
    with _open_text(file) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            total += 1
            if len(records) < n:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    bad.append(f"line {number}: {err.msg}")
    keys = sorted(records[0]) if records and isinstance(records[0], dict) else []
    lines = [f"{total:,} records (one JSON value per line)." + (f" Keys of the first: {keys}" if keys else "")]
    lines += [f"record {i + 1}: {_short(r)}" for i, r in enumerate(records)]
    lines += [f"could not parse {b}" for b in bad]
    return "JSON lines", {"records": total, "head": records, "keys": keys}, "\n".join(lines)


def _preview_json(file: Path, n: int) -> tuple[str, dict, str]:
    with _open_text(file) as handle:
        try:
            kind, items = iter_json_items(handle)
            head, total, keys = [], 0, []
            for key, value in items:
                total += 1
                if kind == "object" and len(keys) < 200:
                    keys.append(key)
                if len(head) < n:
                    head.append((key, value))
        except ValueError as err:
            raise ToolError(f"'{file}' is not valid JSON: {err}") from None
    if kind == "scalar":
        return "JSON", {"type": "scalar", "value": head[0][1]}, f"a single JSON value: {_short(head[0][1])}"
    if kind == "object":
        lines = [f"JSON object with {total:,} keys: {keys[:50]}" + (" ..." if total > 50 else "")]
        lines += [f"{k!r}: {_describe(v)}" for k, v in head]
    else:
        lines = [f"JSON array of {total:,} items."]
        lines += [f"[{i}]: {_describe(v)}" for i, v in head]
    summary = {"type": kind, "length": total, "keys": keys, "head": [v for _, v in head]}
    return "JSON", summary, "\n".join(lines)


def _describe(value: object) -> str:
    if isinstance(value, list):
        return f"list of {len(value)} items, first: {_short(value[:3])}"
    if isinstance(value, dict) and len(json.dumps(value, default=str)) > CELL_CHARS:
        return f"object with {len(value)} keys {list(value)[:10]}: {_short(value)}"
    return _short(value)


def _preview_text(file: Path, n_lines: int) -> tuple[str, dict, str]:
    head, lines, words = [], 0, 0
    with _open_text(file) as handle:
        for line in handle:
            lines += 1
            words += len(line.split())
            if len(head) < n_lines:
                head.append(line.rstrip("\r\n")[:500])
    kind = "XML" if file.suffix.lower() in {".xml", ".html"} else "text"
    text = f"{lines:,} lines, {words:,} words. First {len(head)} lines:\n" + "\n".join(head)
    return kind, {"lines": lines, "words": words, "head": head}, text
