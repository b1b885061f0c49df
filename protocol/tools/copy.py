"""Workspace tool copy_files: copy files or folders into the workspace, never over a file unasked."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.files import as_path_list

MAX_COPY_FILES = 5000
MAX_COPY_BYTES = 2 * 1024**3


@dataclass
class CopyResult:
    copied: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_text(self) -> str:
        lines = [f"Copied {len(self.copied)} file(s):"]
        lines += [f"  {src} -> {dst}" for src, dst in self.copied[:30]]
        if len(self.copied) > 30:
            lines.append(f"  ... and {len(self.copied) - 30} more")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} link(s) leading outside the readable folders: {self.skipped[:10]}")
        return "\n".join(lines)


def copy_files(ctx: Workspace, sources: list[str] | str, destination: str, overwrite: bool = False) -> CopyResult:
    """Copy files or whole folders (e.g. code templates from the reference files) into the workspace.

    Sources may be in the workspace or in a read-only folder; the destination must
    be in the workspace. If destination is an existing folder, ends with '/', or
    several sources are given, each source is copied INTO that folder under its own
    name; otherwise the single source is copied TO that path. Existing files are
    never overwritten unless overwrite=True (nothing is copied if any would be).
    Do not copy whole datasets: read them where they are.

    Args:
        sources: Files or folders to copy, e.g. ["/refs/TrainingScripts/diagnosis"].
        destination: Target folder or file path inside the workspace.
        overwrite: Replace files that already exist at the destination.
    """
    sources = as_path_list(sources)
    if not sources:
        raise ToolError("no source given; pass a list of files or folders to copy")
    resolved = [ctx.existing(s) for s in sources]
    target = ctx.resolve_write(destination)
    into_folder = target.is_dir() or str(destination).endswith(("/", os.sep)) or len(resolved) > 1
    result = CopyResult()
    pairs: list[tuple[Path, Path]] = []
    for source in resolved:
        dest = target / source.name if into_folder else target
        if source.is_dir() and (dest == source or dest.is_relative_to(source)):
            raise ToolError(f"cannot copy the folder {ctx.show(source)} into itself ({ctx.show(dest)}); pick another destination")
        pairs += _file_pairs(ctx, source, dest, result.skipped)
    _check_plan(ctx, pairs, overwrite)
    for source, dest in pairs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        result.copied.append((ctx.show(source), ctx.show(dest)))
    return result


def _file_pairs(ctx: Workspace, source: Path, dest: Path, skipped: list[str]) -> list[tuple[Path, Path]]:
    """(source file, destination file) for a file or a whole folder; links leading out are skipped."""
    if source.is_file():
        return [(source, dest)]
    pairs = []
    for folder, dirnames, filenames in os.walk(source):
        folder_path = Path(folder)
        for name in list(dirnames):
            if (folder_path / name).is_symlink():
                skipped.append(str(folder_path / name))
                dirnames.remove(name)
        for name in filenames:
            entry = folder_path / name
            real = entry.resolve()
            if entry.is_symlink() and not (ctx.is_readable(real) and real.is_file()):
                skipped.append(str(entry))
                continue
            pairs.append((real, dest / entry.relative_to(source)))
    return pairs


def _check_plan(ctx: Workspace, pairs: list[tuple[Path, Path]], overwrite: bool) -> None:
    if len(pairs) > MAX_COPY_FILES:
        raise ToolError(
            f"{len(pairs)} files would be copied (limit {MAX_COPY_FILES}); copy a smaller folder, or read the data in place"
        )
    total = sum(src.stat().st_size for src, _ in pairs)
    if total > MAX_COPY_BYTES:
        raise ToolError(f"{total / 1024**3:.1f} GB would be copied (limit 2 GB); read the data in place instead")
    for source, dest in pairs:
        if ctx.resolve_write(dest) == source:  # also refuses a destination under a symlink leading out
            raise ToolError(f"{ctx.show(dest)} is the source itself; choose another destination")
        if dest.is_dir():
            raise ToolError(f"{ctx.show(dest)} is an existing folder; a file cannot replace it. Choose another destination.")
    clashes = [ctx.show(dest) for _, dest in pairs if dest.exists()]
    if clashes and not overwrite:
        shown = ", ".join(clashes[:10]) + (f", ... ({len(clashes)} in all)" if len(clashes) > 10 else "")
        raise ToolError(
            f"these files already exist: {shown}. Nothing was copied; pass overwrite=true to replace them, "
            "or pick another destination."
        )
