"""Which encoding a text table is in: a byte-order mark, else UTF-8, else Windows-1252 (a superset of
Latin-1 for letters), else Latin-1 (which decodes any bytes).

Spreadsheets exported on Windows write CSVs in cp1252 ("café" as 63 61 66 E9) or
UTF-16 with a BOM ("Unicode text"); reading them as UTF-8 fails or garbles names.
"""

from __future__ import annotations

import codecs
from pathlib import Path

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
FALLBACKS = ("cp1252", "latin-1")
UTF8 = ("utf-8", "utf-8-sig")


def _bomless_utf16(sample: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII text then has a NUL in every other byte."""
    even, odd = sample[0:200:2], sample[1:200:2]
    if len(odd) >= 8 and odd.count(0) > 0.9 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if len(even) >= 8 and even.count(0) > 0.9 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def encoding_of(data: bytes, complete: bool = True) -> str:
    """The encoding `data` decodes with; `complete` False when `data` is only the start of a file."""
    for bom, name in BOMS:
        if data.startswith(bom):
            return name
    wide = _bomless_utf16(data)
    if wide:
        return wide
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    for name in FALLBACKS:
        try:
            data.decode(name)
            return name
        except UnicodeDecodeError:
            continue
    return "latin-1"


def read_text(path: Path) -> tuple[str, str]:
    """The whole file as text, and the encoding it was read with."""
    data = Path(path).read_bytes()
    encoding = encoding_of(data)
    return data.decode(encoding), encoding


def encoding_note(path: Path, encoding: str) -> str | None:
    """A line to show when a file is not UTF-8, naming the file, the encoding used and the fix."""
    if encoding in UTF8:
        return None
    return (f"note: {path} is not UTF-8; read it as {encoding}. If names look wrong, save the file as "
            "UTF-8 (in a spreadsheet: 'CSV UTF-8')")
