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
    current = Path(root)
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        raise UntrustedFileError(f"{rel}: give a path inside {root}")
    for part in parts[:-1]:
        current = current / part
        if stat.S_ISLNK(os.lstat(current).st_mode):
            raise UntrustedFileError(f"{current} is a link; it is not followed")
    target = current / parts[-1]
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        if os.path.islink(target):
            raise UntrustedFileError(f"{target} is a link; it is not followed") from None
        raise FileNotFoundError(err.errno, err.strerror, str(target)) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UntrustedFileError(f"{target} is not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UntrustedFileError(f"{target} is larger than {max_bytes} bytes")
    return data.decode("utf-8", errors="replace")
