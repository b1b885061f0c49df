"""Workspace tool edit_file: replace one exact, unique snippet; say what went wrong otherwise."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from medbuilder.protocol.tools.context import ToolError, Workspace

CONTEXT_LINES = 3
MAX_SCAN_LINES = 20_000


@dataclass
class EditResult:
    path: str
    first_line: int
    last_line: int
    snippet: str

    def as_text(self) -> str:
        return (
            f"Edited {self.path}: lines {self.first_line}-{self.last_line} now read (with context):\n{self.snippet}\n"
            "Check the indentation and that the change is what you meant; run the script to test it."
        )


def edit_file(ctx: Workspace, path: str, old_text: str, new_text: str) -> EditResult:
    """Replace an exact snippet of a workspace file with new text.

    old_text must match the file EXACTLY, including indentation and line breaks,
    and must occur exactly once: include a few surrounding lines to make it
    unique. If it occurs nowhere, nothing is changed and the closest real lines
    are shown ("did you mean"); if it occurs several times, nothing is changed and
    the line numbers of each occurrence are listed. Read the file with read_files
    first. To replace the whole file use write_file.

    Args:
        path: File inside the workspace, e.g. "train.py".
        old_text: The exact text to replace (one or more whole or partial lines).
        new_text: The text to put in its place (may be empty to delete old_text).
    """
    target = ctx.resolve_write(path)
    if not target.is_file():
        raise ToolError(f"'{path}' is not an existing file in the workspace; create it with write_file first")
    if not old_text:
        raise ToolError("old_text is empty; give the exact text to replace, copied from read_files output")
    try:
        content = target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"'{path}' is not a UTF-8 text file; edit_file changes text files only") from None
    starts = _occurrences(content, old_text)
    if not starts:
        raise ToolError(_no_match_message(path, content, old_text))
    if len(starts) > 1:
        lines = ", ".join(str(content.count("\n", 0, s) + 1) for s in starts)
        raise ToolError(
            f"old_text occurs {len(starts)} times in {path} (starting at lines {lines}); nothing was changed. "
            "Include more surrounding lines in old_text so that it matches exactly one place."
        )
    start = starts[0]
    updated = content[:start] + new_text + content[start + len(old_text):]
    target.write_text(updated, encoding="utf-8")
    first = updated.count("\n", 0, start) + 1
    last = first + max(new_text.count("\n") - (1 if new_text.endswith("\n") else 0), 0)
    return EditResult(ctx.show(target), first, last, numbered(updated, first - CONTEXT_LINES, last + CONTEXT_LINES))


def _occurrences(content: str, snippet: str) -> list[int]:
    found, position = [], content.find(snippet)
    while position != -1:
        found.append(position)
        position = content.find(snippet, position + 1)
    return found


def numbered(content: str, first: int, last: int) -> str:
    """Lines first..last (1-based, clipped to the file) with their numbers, like `cat -n`."""
    lines = content.splitlines()
    first, last = max(first, 1), min(last, len(lines))
    return "\n".join(f"{n:6d}\t{lines[n - 1]}" for n in range(first, last + 1))


def _no_match_message(path: str, content: str, old_text: str) -> str:
    message = f"old_text was not found in {path}; nothing was changed."
    if " ".join(old_text.split()) and " ".join(old_text.split()) in " ".join(content.split()):
        message += " It matches if whitespace is ignored: copy the indentation and line breaks exactly."
    start, size = _closest_window(content.splitlines(), old_text.splitlines() or [old_text])
    if start is not None:
        message += f"\nDid you mean these lines?\n{numbered(content, start + 1, start + size)}"
    return message + "\nCopy old_text exactly from the file (read it with read_files) and try again."


def _closest_window(lines: list[str], wanted: list[str]) -> tuple[int | None, int]:
    """Start index and size of the run of file lines most similar to `wanted` (difflib ratio)."""
    size = len(wanted)
    if not lines or len(lines) > MAX_SCAN_LINES:
        return None, size
    target = "\n".join(line.strip() for line in wanted)
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    best_score, best_start = 0.0, None
    for start in range(max(len(lines) - size + 1, 1)):
        matcher.set_seq1("\n".join(line.strip() for line in lines[start:start + size]))
        if matcher.real_quick_ratio() <= best_score or matcher.quick_ratio() <= best_score:
            continue
        score = matcher.ratio()
        if score > best_score:
            best_score, best_start = score, start
    return (best_start, size) if best_score >= 0.4 else (None, size)
