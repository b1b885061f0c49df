"""Script output without control characters, before it reaches the model, the console or the logs.

A script can print terminal escapes (colours, cursor moves, a title change, a hidden line) or bare
control bytes that would rewrite what a person sees or hide text from the model. Kept: newlines and
tabs; a carriage return becomes a newline (progress bars stay readable); everything else of C0, DEL
and C1 goes, with whole ANSI escape sequences.
"""

from __future__ import annotations

import codecs
import re

ANSI_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_output(text: str) -> str:
    text = ANSI_SEQUENCE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return CONTROL.sub("", text)


class CleanStream:
    """Bytes in, cleaned UTF-8 bytes out; multi-byte characters split across chunks are kept whole."""

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, chunk: bytes) -> bytes:
        return clean_output(self.decoder.decode(chunk)).encode()
