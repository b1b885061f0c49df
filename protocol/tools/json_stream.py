"""Decode a JSON file one top-level item at a time, so a large file is never held whole.

Memory is bounded by the largest single top-level item (an array element, or an
object's value), not by the file.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

CHUNK_CHARS = 1 << 16
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\r\n]*")


class _Reader:
    def __init__(self, handle: io.TextIOBase):
        self.handle, self.buf, self.pos, self.eof, self.consumed = handle, "", 0, False, 0

    def fill(self) -> bool:
        """Read more text (at least as much as is buffered: the buffer grows geometrically)."""
        chunk = "" if self.eof else self.handle.read(max(CHUNK_CHARS, len(self.buf) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.consumed += self.pos
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        return True

    def peek(self) -> str:
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def take(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"expected {char!r} near character {self.consumed + self.pos}, found {found or 'end of file'!r}")
        self.pos += 1

    def decode(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if self.fill():
                    continue
                raise ValueError(f"{err.msg} near character {self.consumed + err.pos}") from None
            if end == len(self.buf) and self.fill():
                continue  # a number may go on in the next chunk
            self.pos = end
            return value


def iter_json_items(handle: io.TextIOBase) -> tuple[str, Iterator[tuple[Any, Any]]]:
    """('array', (index, item)...), ('object', (key, value)...) or ('scalar', (None, value))."""
    reader = _Reader(handle)
    first = reader.peek()
    if first == "[":
        return "array", _array_items(reader)
    if first == "{":
        return "object", _object_items(reader)
    if not first:
        raise ValueError("the file is empty")
    return "scalar", iter([(None, reader.decode())])


def _array_items(reader: _Reader) -> Iterator[tuple[int, Any]]:
    reader.take("[")
    if reader.peek() == "]":
        return
    index = 0
    while True:
        yield index, reader.decode()
        index += 1
        if reader.peek() == "]":
            return
        reader.take(",")


def _object_items(reader: _Reader) -> Iterator[tuple[str, Any]]:
    reader.take("{")
    if reader.peek() == "}":
        return
    while True:
        key = reader.decode()
        if not isinstance(key, str):
            raise ValueError(f"object key expected near character {reader.consumed + reader.pos}")
        reader.take(":")
        yield key, reader.decode()
        if reader.peek() == "}":
            return
        reader.take(",")
