"""Write a recipe's planned files into a target folder, idempotently.

The target ends with a small manifest, ``.prepared.json``: recipe, version, limit,
file count, byte count and one sha256 over the sorted ``path sha256`` lines. A
target whose manifest matches and whose planned files are all there with the
recorded total size is complete and left alone. Anything else is completed:
each planned file is written atomically (temporary name, then rename) unless it
already holds the right bytes. Files the recipe does not plan are never touched,
except files that an earlier run of the same recipe wrote with another ``limit``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from medbuilder.protocol.datasets.base import Item, Recipe, SourceMissingError

MANIFEST = ".prepared.json"
FORMAT = 1


def read_manifest(target: Path) -> dict | None:
    """The target's manifest, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(target) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _matches(manifest: dict | None, recipe: Recipe, limit: int | None) -> bool:
    return bool(manifest) and (manifest.get("format"), manifest.get("recipe"), manifest.get("version"),
                               manifest.get("limit")) == (FORMAT, recipe.name, recipe.version, limit)


def _complete(target: Path, items: list[Item], manifest: dict) -> bool:
    if len(items) != manifest.get("files"):
        return False
    total = 0
    for item in items:
        path = target / item.rel
        if not path.is_file():
            return False
        total += path.stat().st_size
    return total == manifest.get("bytes")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remove_leftover_tmp(target: Path, items: list[Item]) -> None:
    """Temporary files an interrupted run left next to planned files."""
    planned: dict[Path, set[str]] = {}
    for item in items:
        path = target / item.rel
        planned.setdefault(path.parent, set()).add(path.name)
    for folder, names in planned.items():
        if folder.is_dir():
            for entry in folder.glob(".*.tmp-*"):
                if entry.name[1:].rsplit(".tmp-", 1)[0] in names:
                    entry.unlink(missing_ok=True)


def _remove_stale(target: Path, recipe: Recipe, old: dict, items: list[Item], echo) -> None:
    """Files an earlier run of this recipe wrote (with another limit) that the new plan drops."""
    try:
        old_names = {i.rel for i in recipe.plan(old.get("limit"))}
    except SourceMissingError:
        return
    stale = sorted(old_names - {i.rel for i in items})
    for rel in stale:
        (target / rel).unlink(missing_ok=True)
    if stale:
        echo(f"{recipe.name}: removed {len(stale)} files of the earlier prepare (limit={old.get('limit')})")


def _check_target(recipe: Recipe, target: Path, manifest: dict | None, force: bool) -> None:
    """Never write into a source folder, nor over another recipe's dataset."""
    where = target.resolve()
    for folder in {src.resolve().parent for src in recipe.sources()}:
        if where == folder or folder in where.parents:
            raise ValueError(f"{target} lies inside the source folder {folder}, which must stay untouched. "
                             f"Prepare somewhere else (--to DIR)")
    if manifest and manifest.get("recipe") not in (None, recipe.name) and not force:
        raise FileExistsError(f"{target} already holds the dataset '{manifest.get('recipe')}' (see its {MANIFEST}). "
                              f"Prepare '{recipe.name}' into its own folder (--to DIR)")


def _check_foreign(recipe: Recipe, target: Path, items: list[Item]) -> dict[str, tuple[int, str]]:
    """Before writing anything into a folder without this recipe's manifest: every planned
    file already there must hold the right bytes. Returns their (size, sha256)."""
    checked = {}
    for item in items:
        path = target / item.rel
        if path.is_file():
            data = item.read()
            if path.read_bytes() != data:
                raise FileExistsError(f"{path} exists with other content and {target} has no '{recipe.name}' "
                                      f"{MANIFEST}: refusing to overwrite a file this recipe did not write. "
                                      "Prepare into an empty folder (--to DIR), or pass --force to overwrite")
            checked[item.rel] = (len(data), hashlib.sha256(data).hexdigest())
    return checked


def run(recipe: Recipe, target: Path, limit: int | None, force: bool, echo: Callable[[str], None],
        on_item: Callable[[int, int], None] | None = None) -> Path:
    """`on_item(done, total)` after each file (a progress bar's)."""
    target = Path(target)
    manifest = read_manifest(target)
    try:
        items = recipe.plan(limit)
    except SourceMissingError:
        if _matches(manifest, recipe, limit):
            echo(f"{recipe.name}: {target} is already prepared ({manifest['files']} files, per its {MANIFEST}); "
                 "its source is not installed here, so it was not re-checked")
            return target
        raise
    if not force and _matches(manifest, recipe, limit) and _complete(target, items, manifest):
        echo(f"{recipe.name}: already prepared in {target} ({manifest['files']} files, "
             f"{manifest['bytes'] / 1e6:.1f} MB); nothing to do")
        return target

    _check_target(recipe, target, manifest, force)
    ours = bool(manifest) and manifest.get("recipe") == recipe.name
    if ours and manifest.get("limit") != limit:
        _remove_stale(target, recipe, manifest, items, echo)
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST).unlink(missing_ok=True)  # an interrupted run must not look complete
    _remove_leftover_tmp(target, items)

    start = time.monotonic()
    checked = {} if ours or force else _check_foreign(recipe, target, items)
    written, total, lines = 0, 0, []
    for done, item in enumerate(sorted(items, key=lambda i: i.rel), 1):
        if item.rel in checked:
            size, digest = checked[item.rel]
        else:
            data = item.read()
            path = target / item.rel
            if not (path.is_file() and path.read_bytes() == data):
                _write_atomic(path, data)
                written += 1
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        total += size
        lines.append(f"{item.rel} {digest}\n")
        if on_item:
            on_item(done, len(items))

    manifest = {
        "format": FORMAT, "recipe": recipe.name, "version": recipe.version, "limit": limit,
        "files": len(items), "bytes": total,
        "sha256_of_listing": hashlib.sha256("".join(lines).encode()).hexdigest(),
        "generated": recipe.generated, "source": recipe.source,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    echo(f"{recipe.name}: prepared {target}: {len(items)} files ({written} written, {len(items) - written} "
         f"already there), {total / 1e6:.1f} MB in {time.monotonic() - start:.1f} s")
    return target
