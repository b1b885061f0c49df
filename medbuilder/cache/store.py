"""The preprocessed-data store: one .npy per (preprocessing, image content), shared by every build.

Layout: ``<root>/<dataset>/<chain key>/chain.json`` (what the key stands for) and
``<root>/<dataset>/<chain key>/<aa>/<item key>.npy``. A dataset folder holds one dataset's entries (the
digest of its root): a build's sandbox sees only its own dataset's. A chain key is the digest of
medbuilder's template code and the configuration keys its deterministic transforms read; an item key is
the digest of the chain key and the content of the files an item reads. Entries are written by medbuilder on the host (a temporary file
renamed into place, so a reader never sees half an entry, and two builds writing the same entry write the
same bytes); scripts read the store read-only. Eviction removes the least recently used entries past the
size limit, never those a build is about to read.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENTRY = ".npy"
HOST_PART = "_host"  # medbuilder/cache/host_memo.py: never a dataset's part, never mounted


@dataclass(frozen=True)
class ChainSummary:
    key: str
    what: dict
    entries: int
    bytes: int
    last_used: float


class PreprocessStore:
    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root).expanduser().resolve()
        self.max_bytes = int(max_bytes)

    def ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the sandbox's own uid reads it
        return self.root

    def entry(self, chain_key: str, item_key: str) -> Path:
        return self.root / chain_key / item_key[:2] / (item_key + ENTRY)

    def part(self, dataset: str) -> Path:
        """One dataset's part of the store (made, readable by the sandbox's uid)."""
        folder = self.ensure() / dataset
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)
        return folder

    def describe_chain(self, chain_key: str, what: dict) -> None:
        """`chain_key` is <dataset>/<chain>: its folder gets chain.json, what the key stands for."""
        folder = self.root / chain_key
        if not (folder / "chain.json").exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o755)
            write_atomic(folder / "chain.json", json.dumps(what, indent=1, sort_keys=True).encode())

    def put(self, chain_key: str, item_key: str, array: np.ndarray) -> Path:
        path = self.entry(chain_key, item_key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        buffer = _npy_bytes(np.ascontiguousarray(array))
        write_atomic(path, buffer)
        return path

    def touch(self, paths) -> None:
        now = time.time()
        for path in paths:
            try:
                os.utime(path, (now, now))
            except FileNotFoundError:
                pass

    @contextmanager
    def locked(self):
        """One writer of the store's bookkeeping (eviction, clearing) at a time, across processes."""
        self.ensure()
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _entries(self):
        """(path as a string, size, mtime) of every entry; os.scandir, for a store of many thousand entries."""
        for chain in self._chains():
            for shard in _scan(os.fspath(chain)):
                if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                    continue
                for item in _scan(shard.path):
                    if not item.name.endswith(ENTRY) or not item.is_file(follow_symlinks=False):
                        continue
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    yield item.path, info.st_size, info.st_mtime

    def _chains(self) -> list[Path]:
        """Every <dataset>/<chain> folder."""
        if not self.root.is_dir():
            return []
        return sorted(chain for part in self.root.iterdir()
                      if part.is_dir() and not part.is_symlink() and part.name != HOST_PART
                      for chain in part.iterdir() if chain.is_dir() and not chain.is_symlink())

    def chain_folders(self, chain_key: str) -> list[Path]:
        """The folders of one chain key, in every dataset's part of the store."""
        return [chain for chain in self._chains() if chain.name == chain_key]

    def size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self, keep: set[Path] = frozenset()) -> int:
        """Remove least recently used entries until the store is within its limit; returns bytes freed."""
        with self.locked():
            entries = sorted(self._entries(), key=lambda e: e[2])
            total, freed, keep = sum(e[1] for e in entries), 0, {os.fspath(p) for p in keep}
            for path, size, _ in entries:
                if total - freed <= self.max_bytes:
                    break
                if path in keep:
                    continue
                Path(path).unlink(missing_ok=True)
                freed += size
            return freed

    def summary(self) -> list[ChainSummary]:
        out = []
        for chain in self._chains():
            sizes = [(info.st_size, info.st_mtime) for info in map(os.stat, chain.glob("??/*" + ENTRY))]
            try:
                what = json.loads((chain / "chain.json").read_text())
            except (OSError, ValueError):
                what = {}
            out.append(ChainSummary(chain.relative_to(self.root).as_posix(), what, len(sizes), sum(s for s, _ in sizes),
                                    max((m for _, m in sizes), default=0.0)))
        return out

    def clear(self, chain_key: str | None = None) -> int:
        """Remove one chain's entries (its key or its <dataset>/<key> as `cache list` shows it, or a prefix of
        either), or all; returns the number of entries removed."""
        with self.locked():
            chains = [c for c in self._chains() if chain_key is None or _matches(c, chain_key)]
            removed = 0
            for chain in chains:
                removed += sum(1 for _ in chain.glob("??/*" + ENTRY))
                shutil.rmtree(chain, ignore_errors=True)
            if chain_key is None:  # everything: the host's per-image features and masks too
                shutil.rmtree(self.root / HOST_PART, ignore_errors=True)
            return removed


def _scan(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _matches(chain: Path, wanted: str) -> bool:
    """'KEY...' matches a chain key's start; 'DATASET.../KEY...' also the start of its dataset folder's name."""
    part, _, key = wanted.rpartition("/")
    return chain.name.startswith(key) and chain.parent.name.startswith(part)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
