"""The shared indexer's outputs, remembered by everything they are computed from.

The indexer (``python -m medbuilder.protocol.indexing JOB.json [--preview]``) reads only the job and the
files under the dataset root, and writes only ``index/*.json``. So a run whose job text, dataset tree
(every entry's path, type, size, modification time and inode, read without following links) and indexer
code (the digest of medbuilder's protocol package) match an earlier run's gets that run's files and output
instead of running again: the layouts the Data Engineer tries twice (the last try and the submission),
and every later build on an unchanged dataset. Anything changed in the dataset, the layout or the code
makes another key.

Entries live under ``<store>/_host/indexer/<code digest>/<key>/`` (a folder no sandbox mounts), written
whole (a temporary folder renamed into place), the MAX_ENTRIES most recent kept. Only regular ``.json``
files the sandboxed indexer wrote are kept, read without following links.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from functools import cache
from pathlib import Path

MAX_ENTRIES = 200
MAX_FILE_BYTES = 256 << 20
OUTPUT = "output.txt"


@cache
def code_digest() -> str:
    import medbuilder.protocol as package

    files = sorted(Path(package.__file__).parent.rglob("*.py"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def tree_digest(root: Path) -> str:
    """Digest of every entry under root: relative path, type, size, mtime and inode (links not followed)."""
    digest = hashlib.sha256()
    pending = [(Path(root), "")]
    while pending:
        folder, rel = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            digest.update(f"unreadable {rel} {err.errno}\n".encode())
            continue
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            path = f"{rel}/{entry.name}"
            digest.update(f"{path}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\n".encode())
            if stat.S_ISDIR(info.st_mode):
                pending.append((Path(entry.path), path))
    return digest.hexdigest()


class IndexerMemo:
    def __init__(self, dataset_root: Path, job_text: str, preview: bool, settings=None):
        from medbuilder.cache.offer import store_for
        from medbuilder.cache.store import HOST_PART
        from medbuilder.settings import get_settings

        settings = settings or get_settings()
        self.enabled = bool(settings.preprocess_cache)
        key = hashlib.sha256(f"{job_text}\0{preview}\0{tree_digest(dataset_root)}".encode()).hexdigest()
        self.parent = store_for(settings).root / HOST_PART / "indexer" / code_digest()
        self.folder = self.parent / key

    def restore(self, index_dir: Path) -> str | None:
        """Write a remembered run's files into index_dir (an agent-writable folder: a link there is replaced,
        never followed); its output, or None when there is none."""
        if not self.enabled or not (self.folder / OUTPUT).is_file():
            return None
        try:
            if os.path.islink(index_dir):
                return None  # the indexer runs and meets it in its sandbox
            index_dir.mkdir(parents=True, exist_ok=True)
            for file in sorted(self.folder.glob("*.json")):
                _write_new(index_dir / file.name, file.read_bytes())
            os.utime(self.folder)  # recently used: kept longer
            return (self.folder / OUTPUT).read_text(encoding="utf-8")
        except OSError:
            return None

    def keep(self, index_dir: Path, names: list[str], output: str) -> None:
        """Remember the indexer's files `names` in index_dir (regular files, read without following links)
        and its output."""
        from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow

        if not self.enabled or self.folder.exists():
            return
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(dir=self.parent, prefix=".partial-"))
        except OSError:
            return
        try:
            for name in names:
                copy_nofollow(index_dir, name, partial / name, max_bytes=MAX_FILE_BYTES)
            (partial / OUTPUT).write_text(output, encoding="utf-8")
            os.rename(partial, self.folder)
        except (OSError, UntrustedFileError):  # a link planted in index/, a full disk: nothing is remembered
            shutil.rmtree(partial, ignore_errors=True)
            return
        self._prune()

    def _prune(self) -> None:
        try:
            entries = sorted((p for p in self.parent.iterdir() if not p.name.startswith(".")),
                             key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return
        for old in entries[MAX_ENTRIES:]:
            shutil.rmtree(old, ignore_errors=True)


def _write_new(target: Path, data: bytes) -> None:
    """target as a new regular file holding data; whatever was at that name (a link too) is removed first."""
    if os.path.lexists(target):
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


PREVIEW = "layout_preview.json"
BUILT = ("train.json", "test.json", "label_dict.json", "indexing_report.json", PREVIEW)


def run_indexer_script(ctx, job_file: str, job_text: str, preview: bool) -> tuple[int | None, str]:
    """Write the job to ctx.root/job_file and run the shared indexer on it in ctx's sandbox, or restore a
    remembered run of the same job on the same dataset tree with the same code: (exit code, output). A
    preview keeps only its report (the folder may hold an index built before); a build keeps the files it
    wrote."""
    from medbuilder.protocol.tools.run import run_script  # the tools import this module

    _write_new(ctx.root / job_file, job_text.encode("utf-8"))
    memo = IndexerMemo(Path(json.loads(job_text)["root"]), job_text, preview)
    index_dir = ctx.root / "index"
    remembered = memo.restore(index_dir)
    if remembered is not None:
        return 0, remembered
    if not preview:
        for name in BUILT:  # what this build writes, and nothing left from an earlier one, is what is kept
            (index_dir / name).unlink(missing_ok=True)
    ran = run_script(ctx, f"python -m medbuilder.protocol.indexing {job_file}" + (" --preview" if preview else ""))
    if ran.exit_code == 0:
        names = [PREVIEW] if preview else [n for n in BUILT if os.path.lexists(index_dir / n)]
        memo.keep(index_dir, names, ran.output)
    return ran.exit_code, ran.output
