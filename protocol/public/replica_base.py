"""What every generated replica shares: the Replica record, label tables torchxrayvision ships, CSV writing."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medbuilder.protocol.datasets.base import package_data

PER_CLASS = 3


@dataclass
class Replica:
    root: Path
    per_class: dict[str, int] = field(default_factory=dict)
    records: int = 0
    patients: int | None = None
    split: dict[str, int] | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (image, mask), relative to the root
    real_rows: str = ""


def xrv_table(name: str) -> Path:
    """A label table torchxrayvision ships (found without importing it: that loads torch)."""
    return package_data("torchxrayvision", "data", name, hint="torchxrayvision==1.5.7")


def stream(name: str):
    with gzip.open(xrv_table(name), "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def pick(rows, groups: dict[str, callable], per_group: int = PER_CLASS) -> dict[str, list[dict]]:
    """The first `per_group` rows of each group (a row goes to the first group whose test it passes)."""
    picked: dict[str, list[dict]] = {g: [] for g in groups}
    for row in rows:
        for name, test in groups.items():
            if test(row):
                if len(picked[name]) < per_group:
                    picked[name].append(row)
                break
        if all(len(v) == per_group for v in picked.values()):
            break
    return picked


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def count(labels) -> dict[str, int]:
    return dict(Counter(labels))
