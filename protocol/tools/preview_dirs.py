"""Workspace tool preview_dirs: what a large dataset folder holds, folder by folder, without listing it all."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.tools.context import ToolError, Workspace, natural_key, suffix_of

MAX_SCANNED = 500_000
PATTERNS_SHOWN = 6
_DIGITS = re.compile(r"\d+")


def name_pattern(name: str) -> str:
    """A name with every run of digits written '#': y12.jpg and y130.jpg are both y#.jpg."""
    return _DIGITS.sub("#", name)


@dataclass
class FolderSummary:
    folder: str
    files: int
    subfolders: int
    files_below: int
    extensions: dict[str, int] = field(default_factory=dict)
    first_files: list[str] = field(default_factory=list)
    links_to_folders: int = 0
    name_patterns: dict[str, int] = field(default_factory=dict)  # file names with digits as '#', most common first

    def as_text(self) -> str:
        exts = ", ".join(f"{ext or '(none)'}: {n}" for ext, n in self.extensions.items()) or "-"
        below = f", {self.files_below} in all below it" if self.files_below != self.files else ""
        names = ", ".join(self.first_files)
        more = f", ... (+{self.files - len(self.first_files)})" if self.files > len(self.first_files) else ""
        links = f"; {self.links_to_folders} links to folders (not followed)" if self.links_to_folders else ""
        line = f"{self.folder}/  files: {self.files}{below}; subfolders: {self.subfolders}{links}; by extension: {exts}"
        line += f"\n    first files: {names}{more}" if names else ""
        if len(self.name_patterns) > 1 or any(n > 1 for n in self.name_patterns.values()):
            line += "\n    name patterns: " + ", ".join(f"{p} ({n})" for p, n in self.name_patterns.items())
        return line


@dataclass
class DirPreview:
    root: str
    folders: list[FolderSummary] = field(default_factory=list)
    folders_not_shown: int = 0
    scan_stopped: bool = False
    folder_patterns: dict[str, int] = field(default_factory=dict)  # folder paths with digits as '#'

    def as_text(self) -> str:
        lines = [f"Preview of {self.root} (natural order: img2 before img10; '#' stands for any digits):"]
        repeated = {p: n for p, n in self.folder_patterns.items() if n > 1}
        if repeated:
            lines.append("folder patterns: " + ", ".join(f"{p}/ ({n} folders)" for p, n in repeated.items()))
        lines += [f.as_text() for f in self.folders]
        if self.folders_not_shown:
            lines.append(f"[{self.folders_not_shown} more folders not shown; preview a sub-folder or raise max_folders]")
        if self.scan_stopped:
            lines.append(f"[counting stopped after {MAX_SCANNED:,} entries; counts are lower bounds]")
        return "\n".join(lines)


def preview_dirs(ctx: Workspace, path: str, max_depth: int = 2, max_names: int = 10, max_folders: int = 50) -> DirPreview:
    """Overview of a dataset folder too large to list: one line per folder.

    For the folder and each sub-folder down to max_depth levels, it gives the
    number of files directly inside, the number in all folders below, the count
    per file extension, the first file names in natural order (img2 before
    img10) and the most common name patterns (digits written '#': a class code or
    token in the names shows here), plus the folder patterns (P#/ for P001/,
    P002/...). Deeper folders are counted but not shown one by one. Use it before
    writing code that walks a dataset.

    Args:
        path: Dataset folder, absolute or relative to the workspace.
        max_depth: How many levels of sub-folders to show (0 = only the folder itself).
        max_names: How many file names to show per folder.
        max_folders: How many folders to show at most.
    """
    root = ctx.existing(path, kind="dir")
    depth, names, cap = max(0, min(int(max_depth), 6)), max(0, min(int(max_names), 100)), max(1, min(int(max_folders), 500))
    preview = DirPreview(ctx.show(root))
    budget = [MAX_SCANNED]
    _summarize(root, root, 0, depth, names, preview, budget)
    preview.scan_stopped = budget[0] <= 0
    shown = sorted(preview.folders, key=lambda f: natural_key(f.folder))
    patterns = Counter(name_pattern(f.folder) for f in shown if f.folder != ".")
    preview.folder_patterns = dict(patterns.most_common(PATTERNS_SHOWN * 2))
    preview.folders, preview.folders_not_shown = shown[:cap], max(len(shown) - cap, 0)
    return preview


def _summarize(folder: Path, root: Path, level: int, max_depth: int, n_names: int,
               preview: DirPreview, budget: list[int]) -> int:
    """Add a summary of `folder` (and of its sub-folders up to max_depth); return its files_below."""
    files, subdirs, links = _scan(folder, budget)
    summary = FolderSummary(
        folder="." if folder == root else str(folder.relative_to(root)),
        files=len(files), subfolders=len(subdirs), files_below=len(files), links_to_folders=len(links),
        extensions=dict(Counter(suffix_of(Path(f)) for f in files).most_common()),
        first_files=sorted(files, key=natural_key)[:n_names],
        name_patterns=dict(Counter(name_pattern(f) for f in files).most_common(PATTERNS_SHOWN)),
    )
    preview.folders.append(summary)
    for sub in sorted(subdirs, key=natural_key):
        if level < max_depth:
            summary.files_below += _summarize(folder / sub, root, level + 1, max_depth, n_names, preview, budget)
        else:
            summary.files_below += _count_below(folder / sub, budget)
    return summary.files_below


def _scan(folder: Path, budget: list[int]) -> tuple[list[str], list[str], list[str]]:
    """File names, sub-folder names, and names of links to folders (never followed: they may lead out or loop)."""
    files, subdirs, links = [], [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                elif entry.is_symlink() and entry.is_dir():
                    links.append(entry.name)
                else:
                    files.append(entry.name)
    except PermissionError as err:
        raise ToolError(f"cannot read {folder}: permission denied") from err
    return files, subdirs, links


def _count_below(folder: Path, budget: list[int]) -> int:
    files, subdirs, _ = _scan(folder, budget)
    return len(files) + sum(_count_below(folder / s, budget) for s in subdirs)
