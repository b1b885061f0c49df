"""A checksum manifest of a run's dataset: raw data is never modified.

The manifest (``dataset_manifest.json`` in the run folder: relative path -> size,
mtime, sha256) is taken with full sha256 as soon as a stage ends with the run's
dataset chosen and on disk (after the Task Manager, or after ``prepare_data``
when the folder had to be laid out), before any agent reads it. Every stage is
then wrapped in :func:`guard_dataset`: the dataset is compared before and after
the stage; a file modified, deleted or added during a stage fails that stage
(``DatasetModified``) and is written to ``dataset_violation.json``.

A comparison stats every file and hashes only those whose size or mtime
changed, so it costs milliseconds on thousands of files.

A change found *before* a stage, when no stage was running, was made by a
person between stages (typically replacing a corrupted file the checks named,
then `medbuilder resume RUN`): it is accepted, listed in the manifest's
``accepted`` entries, and the manifest follows the new content. It is refused
while a recorded violation is not undone, or when a stage was interrupted
mid-way (its changes cannot be told apart from a person's).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from medbuilder.protocol.artifacts import StageRecord, now
from medbuilder.protocol.run_folder import RunFolder

MANIFEST_FILE = "dataset_manifest.json"
VIOLATION_FILE = "dataset_violation.json"
PREPARE_STAGE = "prepare_data"  # the one stage that may write the dataset: `medbuilder data prepare`'s recipe
SHOWN = 10


class FileEntry(BaseModel):
    size: int
    mtime_ns: int
    sha256: str


class ManifestDiff(BaseModel):
    modified: list[str] = []
    deleted: list[str] = []
    added: list[str] = []

    @property
    def empty(self) -> bool:
        return not (self.modified or self.deleted or self.added)

    def files(self) -> list[str]:
        return self.modified + self.deleted + self.added

    def describe(self) -> str:
        parts = []
        for kind in ("modified", "deleted", "added"):
            names = getattr(self, kind)
            if names:
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                parts.append(f"{kind} {len(names)}: {', '.join(names[:SHOWN])}{more}")
        return "; ".join(parts)


class DatasetManifest(BaseModel):
    root: str
    taken: str
    seconds: float
    files: dict[str, FileEntry]
    accepted: list[dict] = []


class DatasetModified(RuntimeError):
    """Files of the dataset changed during a stage (or a recorded change was not undone)."""

    def __init__(self, message: str, diff: ManifestDiff):
        self.diff = diff
        super().__init__(message)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result, Path]]:
    """(relative path, stat, path) of every file under root, each folder's files (sorted) before its
    subfolders (sorted), as os.walk visits them: links to files are followed, links to folders are not
    entered, and a dangling link counts as missing. Strings and os.scandir, not Path objects: a comparison
    runs before and after every stage."""
    yield from ((rel, st, Path(full)) for rel, st, full in _scan(str(root), ""))


def _scan(folder: str, prefix: str) -> Iterator[tuple[str, os.stat_result, str]]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:  # as os.walk: a folder that cannot be listed is skipped
        return
    folders = []
    for entry in entries:
        try:
            is_folder = entry.is_dir()
        except OSError:
            is_folder = False
        if is_folder:
            if not entry.is_symlink():
                folders.append(entry)
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:  # a dangling link counts as missing
            continue
        yield prefix + entry.name, stat, entry.path
    for entry in folders:
        yield from _scan(entry.path, f"{prefix}{entry.name}/")


def take_manifest(root: Path) -> DatasetManifest:
    """Every file under `root` with its size, mtime and full sha256."""
    root = Path(root).resolve()
    started = time.perf_counter()
    files = {rel: FileEntry(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256_of(path))
             for rel, st, path in _walk(root)}
    return DatasetManifest(root=str(root), taken=now(), seconds=round(time.perf_counter() - started, 3), files=files)


def compare(manifest: DatasetManifest, root: Path | None = None) -> tuple[ManifestDiff, dict[str, FileEntry]]:
    """What differs from `manifest` now, and the current entries (hashing only files whose size or mtime moved)."""
    root = Path(root or manifest.root)
    diff, current = ManifestDiff(), {}
    for rel, st, path in _walk(root):
        old = manifest.files.get(rel)
        if old and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
            current[rel] = old
            continue
        current[rel] = FileEntry(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256_of(path))
        if old is None:
            diff.added.append(rel)
        elif current[rel].sha256 != old.sha256:
            diff.modified.append(rel)
    diff.deleted = sorted(set(manifest.files) - set(current))
    return diff, current


def read_manifest(run: RunFolder) -> DatasetManifest | None:
    return run.read(MANIFEST_FILE, DatasetManifest) if run.exists(MANIFEST_FILE) else None


def dataset_root(run: RunFolder) -> Path | None:
    """The run's chosen dataset folder, once the datacard is chosen and the folder exists."""
    card, root = run.datacard(), run.dataset_root
    if card is None or root is None:
        return None
    root = root.resolve()
    return root if root.is_dir() and card.has_images else None


def _modified_message(run: RunFolder, stage: str, root: str, diff: ManifestDiff) -> str:
    return (f"stage {stage} changed the dataset at {root} ({diff.describe()}). Raw data must never be modified: "
            "agents write only in the run's workspace. Restore those files from the dataset's source "
            f"(`medbuilder data prepare NAME --force` for a shipped dataset), then `medbuilder resume {run.run_id}`; "
            f"the changes are listed in {VIOLATION_FILE}")


def _interrupted_stage(run: RunFolder, stage: str, interrupted: bool) -> str | None:
    """A stage left 'running' by a killed process, or marked 'interrupted' by `medbuilder resume`'s recovery
    (`interrupted`: this stage was)."""
    if interrupted:
        return stage
    for file in sorted((run.root / "stages").glob("*.json")):
        record = run.read(f"stages/{file.name}", StageRecord)
        marked = record.status == "failed" and (record.error or "").startswith("interrupted")
        if (record.status == "running" or marked) and record.stage != stage:
            return record.stage
    return None


def check_before(run: RunFolder, stage: str, interrupted: bool = False) -> None:
    """Accept a person's change made between stages; refuse one a stage made and nobody undid."""
    manifest, root = read_manifest(run), dataset_root(run)
    if manifest is None or root is None or manifest.root != str(root):
        return
    diff, current = compare(manifest, root)
    violation = run.read_json(VIOLATION_FILE) if run.exists(VIOLATION_FILE) else None
    if diff.empty:
        if violation:
            run.path(VIOLATION_FILE).rename(run.path(f"{VIOLATION_FILE}.resolved-{int(time.time())}"))
        return
    if violation:
        raise DatasetModified(f"the dataset still differs from the run's manifest after stage {violation['stage']} "
                              f"changed it ({diff.describe()}). Raw data must never be modified. Restore those "
                              f"files from the dataset's source, then `medbuilder resume {run.run_id}`", diff)
    interrupted_stage = _interrupted_stage(run, stage, interrupted)
    if interrupted_stage:
        raise DatasetModified(f"the dataset changed while stage {interrupted_stage} was running and the run was "
                              f"interrupted ({diff.describe()}); a stage's change cannot be told apart from yours. "
                              "Raw data must never be modified: restore those files, or start a new run", diff)
    manifest.accepted.append({"before_stage": stage, "when": now(), **diff.model_dump()})
    manifest.files = current
    run.write(MANIFEST_FILE, manifest)


def check_after(run: RunFolder, stage: str) -> None:
    """Take the manifest if there is none for this dataset yet; otherwise fail on any change."""
    manifest, root = read_manifest(run), dataset_root(run)
    if root is None:
        return
    if manifest is None or manifest.root != str(root):
        run.write(MANIFEST_FILE, take_manifest(root))
        return
    diff, current = compare(manifest, root)
    if diff.empty or stage == PREPARE_STAGE:
        if current != manifest.files:  # touched but identical, or laid out by the recipe
            if not diff.empty:
                manifest.accepted.append({"stage": stage, "when": now(), "why": "laid out by the recipe",
                                          **diff.model_dump()})
            manifest.files = current
            run.write(MANIFEST_FILE, manifest)
        return
    run.write(VIOLATION_FILE, {"stage": stage, "when": now(), "root": str(root), **diff.model_dump()})
    raise DatasetModified(_modified_message(run, stage, str(root), diff), diff)


@contextmanager
def guard_dataset(run: RunFolder, stage: str, interrupted: bool = False) -> Iterator[None]:
    """Wrap one stage: the dataset must be as the manifest says before and after it.

    `interrupted`: the stage's record said 'running' when it started again (its process was killed).
    """
    check_before(run, stage, interrupted)
    try:
        yield
    except DatasetModified:
        raise
    except BaseException as err:
        try:
            check_after(run, stage)
        except DatasetModified as changed:
            raise changed from err
        raise
    check_after(run, stage)
