"""Conversions for public datasets whose published files medbuilder cannot read as they are.

A conversion reads the download and writes a new folder (never the download); the card points there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medbuilder.protocol.indexing.tables import read_rows
from medbuilder.protocol.public.pickled import to_nifti


def kneemri(source: Path, target: Path, on_item=None) -> list[str]:
    """KneeMRI's pickled volumes to volumes/<name>.nii.gz, and metadata.csv beside them; returns notes."""
    table = min(source.glob("**/metadata.csv"), key=lambda p: len(p.parts))
    rows = read_rows(table, None, None, [])
    volumes = {p.name: p for p in source.glob("**/*.pck") if p.is_file() and not p.is_symlink()}
    wanted = [row.get("volumeFilename", "") for row in rows]
    missing = [name for name in wanted if name not in volumes]
    for done, name in enumerate(n for n in wanted if n in volumes):
        to_nifti(volumes[name], target / "volumes" / (name.removesuffix(".pck") + ".nii.gz"))
        if on_item:
            on_item(done + 1, len(wanted) - len(missing))
    shutil.copyfile(table, target / "metadata.csv")
    notes = [f"{len(wanted) - len(missing)} volumes converted from {source}"]
    if missing:
        notes.append(f"{len(missing)} rows of {table.name} name no .pck file (e.g. {missing[0]})")
    return notes


CONVERTERS = {"kneemri": kneemri}
