"""Workspace tools: list_files, read_files and write_file.

Every function takes the run's `Workspace` first; the docstrings are written for
the model (the LangChain layer shows them without the `ctx` argument).
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.tools.context import ToolError, Workspace, human_size, natural_key

SKIPPED_DIRS = {".git", "__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
MAX_FILES_PER_READ = 10


@dataclass
class Listing:
    folder: str
    entries: list[str] = field(default_factory=list)
    truncated: bool = False

    def as_text(self) -> str:
        if not self.entries:
            return f"{self.folder} is empty."
        note = "\n[listing stopped at the cap; use preview_dirs for large dataset folders]" if self.truncated else ""
        return f"{self.folder}:\n" + "\n".join(self.entries) + note


def list_files(ctx: Workspace, path: str = ".", recursive: bool = False, max_entries: int = 200) -> Listing:
    """List the files and folders in a folder of the workspace or of a read-only dataset folder.

    Folders end with '/', files show their size. Entries are in natural order
    (img2 before img10). With recursive=True, sub-folders are walked too (.git and
    __pycache__ are skipped) until max_entries entries are listed. For a dataset
    folder with thousands of images use preview_dirs instead, which counts files
    per folder.

    Args:
        path: Folder to list, relative to the workspace or absolute. Defaults to the workspace.
        recursive: Also list everything inside sub-folders.
        max_entries: Stop after this many entries (at most 2000).
    """
    folder = ctx.existing(path, kind="dir")
    cap = max(1, min(int(max_entries), 2000))
    listing = Listing(ctx.show(folder))
    pending = deque([folder])
    while pending and not listing.truncated:
        current = pending.popleft()
        children = sorted(current.iterdir(), key=lambda p: natural_key(p.name))
        for child in children:
            if len(listing.entries) >= cap:
                listing.truncated = True
                break
            rel = child.relative_to(folder)
            if child.is_dir() and not child.is_symlink():
                listing.entries.append(f"{rel}/")
                if recursive and child.name not in SKIPPED_DIRS:
                    pending.append(child)
            elif child.is_symlink():
                listing.entries.append(f"{rel} -> {os.readlink(child)}")
            else:
                listing.entries.append(f"{rel}  ({human_size(child.stat().st_size)})")
    return listing


def as_path_list(paths: list[str] | str | Path) -> list[str]:
    """A list of paths; a single path, or a JSON list sent as a string, is accepted too."""
    if isinstance(paths, Path):
        return [str(paths)]
    if isinstance(paths, str):
        text = paths.strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = None
            if isinstance(loaded, list) and all(isinstance(p, str) for p in loaded):
                return loaded
        return [paths]
    return [str(p) for p in paths]


@dataclass
class FileText:
    path: str
    text: str
    first_line: int
    last_line: int
    total_lines: int
    lines_left: int = 0  # lines after last_line that this page did not show
    chars_left: int = 0

    def as_text(self) -> str:
        whole = (self.first_line, self.last_line) == (1, self.total_lines)
        span = "" if whole else f", showing lines {self.first_line}-{self.last_line}"
        page = f"===== {self.path} ({self.total_lines} lines{span}) =====\n{self.text}"
        if self.lines_left:
            page += (f"\n[... {self.lines_left} more lines ({self.chars_left:,} characters) after line "
                     f"{self.last_line}; call read_files with offset={self.last_line + 1} to read on ...]")
        return page


def read_files(ctx: Workspace, paths: list[str] | str, offset: int | None = None,
               limit: int | None = None) -> list[FileText]:
    """Read one or several text files (code, configs, descriptions), a page at a time.

    Each file is shown from line `offset` for at most `limit` lines, and no more
    characters than fit the output limit (shared by the files of one call: read a
    long file alone to get the largest page). A page that does not reach the end
    of the file says how many lines are left and the offset to read on from.
    Binary files (images, archives) are refused: use load_med_data for images and
    preview_files for large tables or JSON. At most 10 files per call.

    Args:
        paths: File paths, relative to the workspace or absolute, e.g. ["train.py"].
        offset: First line to show (1-based, default 1). Applies to every file given.
        limit: Most lines to show per file (default: as many as fit).
    """
    paths = as_path_list(paths)
    if not paths:
        raise ToolError("no path given; pass a list of file paths, e.g. ['train.py']")
    if len(paths) > MAX_FILES_PER_READ:
        raise ToolError(f"{len(paths)} files asked for; read at most {MAX_FILES_PER_READ} per call")
    first = max(1, int(offset or 1))
    if limit is not None and int(limit) < 1:
        raise ToolError(f"limit {limit} shows no line; give a limit of at least 1, or none")
    budget = max(ctx.output_chars * 2 // len(paths), 1500)  # the toolbox cuts a call's output at twice the limit
    return [_read_one(ctx, p, first, int(limit) if limit else None, budget) for p in paths]


def _read_one(ctx: Workspace, path: str, first: int, limit: int | None, budget: int) -> FileText:
    file = ctx.existing(path, kind="file")
    with file.open("rb") as handle:
        if b"\0" in handle.read(8192):
            raise ToolError(
                f"'{path}' is a binary file ({human_size(file.stat().st_size)}); "
                "use load_med_data for images and volumes, preview_files for tables and JSON"
            )
    shown: list[str] = []
    used = total = last = chars_left = 0
    full = False
    with file.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            total = number
            if number < first:
                continue
            if not full and len(line) > budget // 3:
                line = f"{line[: budget // 3]} [... this line is {len(line):,} characters long, cut ...]\n"
            full = full or (limit is not None and len(shown) >= limit) or (bool(shown) and used + len(line) > budget)
            if full:
                chars_left += len(line)
                continue
            shown.append(line)
            used, last = used + len(line), number
    if first > max(total, 1):
        raise ToolError(f"'{path}' has only {total} lines; offset {first} is past the end")
    last = last or first - 1
    return FileText(ctx.show(file), "".join(shown).rstrip("\n"), first, last, total, total - last, chars_left)


@dataclass
class WriteResult:
    path: str
    chars: int
    lines: int
    created: bool

    def as_text(self) -> str:
        verb = "Created" if self.created else "Overwrote"
        return f"{verb} {self.path} ({self.lines} lines, {self.chars} characters)."


def write_file(ctx: Workspace, path: str, content: str) -> WriteResult:
    """Create a text file in the workspace, or overwrite it completely, with the given content.

    Parent folders are created as needed. Only the workspace is writable; the
    dataset and reference folders are read-only. To change a few lines of an
    existing file use edit_file instead of rewriting it.

    Args:
        path: File path inside the workspace, e.g. "Datapath/make_splits.py".
        content: The full text of the file.
    """
    target = ctx.resolve_write(path)
    if target.is_dir():
        raise ToolError(f"'{path}' is an existing folder; give a file path inside it, e.g. '{path}/main.py'")
    created = not target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return WriteResult(ctx.show(target), len(content), content.count("\n") + (0 if content.endswith("\n") else 1), created)
