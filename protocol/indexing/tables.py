"""Rows of a label table: CSV or TSV (any common encoding and delimiter), Excel, a JSON list, JSON lines.

Every row is a dict of column -> text; a problem names the file and the fix.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

from medbuilder.protocol.text_files import encoding_note, read_text

DELIMITERS = ",;\t|"
csv.field_size_limit(2**31 - 1)


class TableError(ValueError):
    """A table that cannot be read as rows; the message names the file and the fix."""


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def _delimiter(text: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _text(file: Path, notes: list[str] | None) -> str:
    if file.name.lower().endswith(".gz"):
        return _gunzipped_text(file)
    text, encoding = read_text(file)
    note = encoding_note(file, encoding)
    if note and notes is not None:
        notes.append(note.removeprefix("note: "))
    return text


def _gunzipped_text(file: Path) -> str:
    try:
        with gzip.open(file, "rt", encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise TableError(f"{file}: not a readable gzip-compressed UTF-8 table ({err}); decompress it (gunzip -k) "
                         "and check the file") from None


def _csv_rows(file: Path, notes: list[str] | None) -> list[dict[str, str]]:
    text = _text(file, notes)
    suffix = Path(file.name.removesuffix(".gz").removesuffix(".GZ")).suffix.lower()
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_delimiter(text, suffix))
    try:
        rows = [{(k or "").strip(): _cell(v) for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as err:
        raise TableError(f"{file}: malformed CSV near line {reader.line_num}: {err}; fix or re-export the table") from None
    return rows


def _excel_rows(file: Path, sheet: str | None) -> list[dict[str, str]]:
    try:
        import openpyxl
    except ImportError as err:  # pragma: no cover - a pinned dependency
        raise TableError(f"{file}: reading Excel needs openpyxl; export the sheet as CSV instead") from err
    try:
        book = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as err:
        raise TableError(f"{file}: not a readable .xlsx workbook ({err}); save it as .xlsx or CSV") from None
    if sheet is not None and sheet not in book.sheetnames:
        raise TableError(f"{file}: no sheet '{sheet}'; sheets: {book.sheetnames}")
    rows = list((book[sheet] if sheet else book.worksheets[0]).iter_rows(values_only=True))
    book.close()
    if not rows:
        return []
    header = [_cell(h) for h in rows[0]]
    return [{h: _cell(v) for h, v in zip(header, row) if h} for row in rows[1:] if any(v is not None for v in row)]


def _json_records(document: object, file: Path, records_key: str | None) -> list:
    if records_key is not None:
        if not isinstance(document, dict) or records_key not in document:
            keys = list(document)[:20] if isinstance(document, dict) else type(document).__name__
            raise TableError(f"{file}: no key '{records_key}' at the top level (found: {keys}); set records_key")
        document = document[records_key]
    if isinstance(document, dict):
        lists = [k for k, v in document.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)]
        if len(lists) == 1:
            return document[lists[0]]
        if document and all(isinstance(v, dict) for v in document.values()):
            return [{"key": k, **v} for k, v in document.items()]  # {"case1": {...}, ...}: the key is column 'key'
        if document and all(isinstance(v, str) for v in document.values()):
            return [{"key": k, "value": v} for k, v in document.items()]  # {"case1": "text", ...}: 'key', 'value'
        raise TableError(f"{file}: a JSON object, not a list of records; set records_key to one of {lists or list(document)[:20]}")
    if not isinstance(document, list):
        raise TableError(f"{file}: holds a single {type(document).__name__}, not a list of records")
    return document


def _rows_of(records: list, file: Path) -> list[dict[str, str]]:
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TableError(f"{file}: record {i} is a {type(record).__name__}, not an object with named fields")
        rows.append({str(k): _cell(v) for k, v in record.items()})
    return rows


def read_rows(file: Path, sheet: str | None = None, records_key: str | None = None,
              notes: list[str] | None = None) -> list[dict[str, str]]:
    """The table's rows as dicts of text; a note on its encoding (not UTF-8) goes to `notes`."""
    if not file.is_file():
        raise TableError(f"the table {file} does not exist; check the layout's 'table' against the dataset's files")
    name = file.name.lower()
    if name.endswith((".xlsx", ".xlsm")):
        return _excel_rows(file, sheet)
    if name.endswith((".jsonl", ".ndjson")):
        text = _text(file, notes)
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise TableError(f"{file}: line {err.lineno} is not JSON: {err.msg}") from None
        return _rows_of(records, file)
    if name.endswith(".json"):
        text = _text(file, notes)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            raise TableError(f"{file}: malformed JSON at line {err.lineno}: {err.msg}") from None
        return _rows_of(_json_records(document, file, records_key), file)
    return _csv_rows(file, notes)
