"""The workspace every tool acts in, the error tools raise, and output cutting.

Confinement lives here and only here. A tool never opens a path it was given:
it asks the `Workspace` first. ``resolve_read`` accepts a path inside the
workspace or inside one of the read-only roots (the chosen dataset, the
reference files); ``resolve_write`` accepts a path inside the workspace that is
not inside a read-only root. Relative paths are relative to the workspace;
``..``, absolute paths and symlinks are resolved with ``Path.resolve()`` before
the check, so a symlink inside the workspace that leads out is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medbuilder.protocol.tools.sandbox import SandboxConfig


class ToolError(Exception):
    """A mistake in a tool call; the message says how to fix the call.

    The LangChain layer turns it into the observation the model reads next.
    """


@dataclass(frozen=True)
class Workspace:
    """One run's workspace (read, write, execute) and its read-only roots.

    Build it with `Workspace.create`, which resolves the paths, makes the
    workspace folder and takes the limits from the settings.
    """

    root: Path
    read_roots: tuple[Path, ...] = ()
    output_chars: int = 6000
    script_timeout_s: float = 900.0
    kill_grace_s: float = 3.0
    live_log: Path | None = None  # run_script appends every command's output here as it comes (capped)
    echo: bool = False  # and also writes it to this process's stdout (progress on the console)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # isolation and limits of run_script
    dataset: Any = None  # the DatasetFacts apply_layout serves (the Data Engineer's dataset), if any
    # called by run_script before a Python script starts (medbuilder's preprocessing into its store); returns a note
    before_script: Callable[["Workspace"], str | None] | None = None

    @classmethod
    def create(
        cls,
        root: Path | str,
        read_roots: Iterable[Path | str] = (),
        *,
        output_chars: int | None = None,
        script_timeout_s: float | None = None,
        kill_grace_s: float = 3.0,
        sandbox: SandboxConfig | None = None,
    ) -> Workspace:
        """Resolve the roots, create the workspace folder, fill limits and sandbox from `get_settings()`."""
        if output_chars is None or script_timeout_s is None or sandbox is None:
            from medbuilder.settings import get_settings

            settings = get_settings()
            output_chars = output_chars if output_chars is not None else settings.tool_output_chars
            script_timeout_s = script_timeout_s if script_timeout_s is not None else settings.script_timeout_s
            sandbox = sandbox if sandbox is not None else SandboxConfig.from_settings(settings)
        workspace = Path(root).expanduser().resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        readable = tuple(dict.fromkeys(Path(r).expanduser().resolve() for r in read_roots))
        for read_root in readable:
            if not read_root.is_dir():
                raise ValueError(f"read-only root {read_root} is not an existing folder")
            if workspace.is_relative_to(read_root):
                raise ValueError(
                    f"the workspace {workspace} lies inside the read-only root {read_root}; "
                    "put the workspace elsewhere (e.g. under runs/<run-id>/)"
                )
        return cls(workspace, readable, output_chars, script_timeout_s, kill_grace_s, sandbox=sandbox)

    def describe(self) -> str:
        """One paragraph for an agent's prompt: where it may write and read."""
        readable = ", ".join(str(p) for p in self.read_roots) or "none"
        return (
            f"Your workspace is {self.root}: relative paths are relative to it, and it is the only place you may "
            f"write and run scripts (limit {self.script_timeout_s:.0f} s each). Read-only folders: {readable}."
            + ("" if self.sandbox.mode == "off" else " Scripts run in a sandbox: no network, everything outside the "
               "workspace read-only, /tmp private and small; install nothing, keep outputs in the workspace.")
        )

    # -- confinement -------------------------------------------------------
    def _resolve(self, path: Path | str) -> Path:
        text = str(path).strip()
        if not text:
            raise ToolError("the path is empty; give a file or folder path, e.g. 'train.py' or '.'")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        return candidate.resolve()

    def _rules(self) -> str:
        readable = ", ".join(str(p) for p in (self.root, *self.read_roots))
        return f"you may write only under {self.root}, and read under {readable}"

    def resolve_read(self, path: Path | str) -> Path:
        """The resolved path, if it lies in the workspace or a read-only root."""
        resolved = self._resolve(path)
        if not any(resolved.is_relative_to(r) for r in (self.root, *self.read_roots)):
            raise ToolError(f"'{path}' resolves to {resolved}, which is outside the readable folders; {self._rules()}")
        return resolved

    def resolve_write(self, path: Path | str) -> Path:
        """The resolved path, if it lies in the workspace and in no read-only root."""
        resolved = self._resolve(path)
        if not resolved.is_relative_to(self.root):
            raise ToolError(f"'{path}' resolves to {resolved}, which is outside the workspace {self.root}; {self._rules()}")
        for read_root in self.read_roots:
            if resolved.is_relative_to(read_root):
                raise ToolError(f"'{path}' is inside the read-only folder {read_root}; {self._rules()}")
        return resolved

    def is_readable(self, resolved: Path) -> bool:
        """Whether an already resolved path lies in the workspace or a read-only root."""
        return any(resolved.is_relative_to(r) for r in (self.root, *self.read_roots))

    def existing(self, path: Path | str, *, kind: str = "any") -> Path:
        """`resolve_read` plus an existence check; kind is 'file', 'dir' or 'any'."""
        resolved = self.resolve_read(path)
        if not resolved.exists():
            near = _near_names(resolved)
            hint = f" Entries in {resolved.parent}: {near}." if near else ""
            raise ToolError(f"'{path}' does not exist ({resolved}).{hint} Use list_files to see what is there.")
        if kind == "file" and not resolved.is_file():
            raise ToolError(f"'{path}' is a folder, not a file; use list_files or preview_dirs on it.")
        if kind == "dir" and not resolved.is_dir():
            raise ToolError(f"'{path}' is a file, not a folder; use read_files or preview_files on it.")
        return resolved

    def show(self, resolved: Path) -> str:
        """A path as the model should write it: relative inside the workspace, else absolute."""
        if resolved.is_relative_to(self.root):
            return str(resolved.relative_to(self.root)) or "."
        return str(resolved)

    def cut(self, text: str, limit: int | None = None, *, hint: str = "") -> str:
        """`cut_middle` with the workspace's output limit."""
        return cut_middle(text, limit or self.output_chars, hint=hint)


def _near_names(missing: Path, limit: int = 15) -> str:
    parent = missing.parent
    if not parent.is_dir():
        return ""
    names = sorted((p.name + ("/" if p.is_dir() else "") for p in parent.iterdir()), key=natural_key)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def cut_middle(text: str, limit: int, *, hint: str = "") -> str:
    """Keep the head and the tail of `text` (about `limit` chars) with a marker in between.

    The marker says how many characters and lines were cut, and `hint` how to see them.
    """
    if len(text) <= limit:
        return text
    head_chars = limit * 2 // 3
    tail_chars = limit - head_chars
    head, middle, tail = text[:head_chars], text[head_chars:-tail_chars], text[-tail_chars:]
    marker = f"\n[... {len(middle):,} characters ({middle.count(chr(10)):,} lines) cut here"
    marker += f"; {hint}" if hint else ""
    return head + marker + " ...]\n" + tail


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting 'img2' before 'img10'."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name))


def suffix_of(path: Path) -> str:
    """The file's extension, keeping double ones: '.nii.gz', '.tar.gz', '.csv.gz'."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[1] in {".gz", ".bz2", ".xz"} and len(suffixes[0]) <= 5:
        return "".join(suffixes)
    return suffixes[-1] if suffixes else ""


def human_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
