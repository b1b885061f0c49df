"""Reading files from an agent's workspace on the host: never through a link the agent may have planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_BYTES = 64 * 1024 * 1024


class UntrustedFileError(ValueError):
    """The file is a link, lies outside its folder, or is too large; the message says which."""


def read_text_nofollow(root: Path, rel: str, max_bytes: int = MAX_BYTES) -> str:
    """The text of `root/rel`, refusing any link on the way from `root` and files over `max_bytes`."""
    with open_nofollow(root, rel, max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UntrustedFileError(f"{Path(root) / rel} is larger than {max_bytes} bytes")
    return data.decode("utf-8", errors="replace")


def open_nofollow(root: Path, rel: str, max_bytes: int = MAX_BYTES):
    """A binary handle on `root/rel`: no link on the way from `root`, a regular file with one link (a hard
    link could name a file outside the workspace), at most `max_bytes`."""
    current = Path(root)
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts or not parts:
        raise UntrustedFileError(f"{rel}: give a path inside {root}")
    for part in parts[:-1]:
        current = current / part
        if stat.S_ISLNK(os.lstat(current).st_mode):
            raise UntrustedFileError(f"{current} is a link; it is not followed")
    target = current / parts[-1]
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a planted FIFO must not block us
    except OSError as err:
        if os.path.islink(target):
            raise UntrustedFileError(f"{target} is a link; it is not followed") from None
        raise FileNotFoundError(err.errno, err.strerror, str(target)) from None
    handle = os.fdopen(fd, "rb")
    info = os.fstat(handle.fileno())
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               f"has {info.st_nlink} hard links; only a file of its own is copied" if info.st_nlink > 1 else
               f"is larger than {max_bytes} bytes" if info.st_size > max_bytes else None)
    if problem:
        handle.close()
        raise UntrustedFileError(f"{target} {problem}")
    return handle


def copy_nofollow(root: Path, rel: str, dest: Path, max_bytes: int = MAX_BYTES) -> Path:
    """Copy `root/rel` to `dest` on the host the way `open_nofollow` reads it; `dest` is replaced whole."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with open_nofollow(root, rel, max_bytes) as source, open(partial, "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
    partial.replace(dest)
    return dest
