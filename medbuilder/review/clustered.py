"""Intervals over independent units, not over images.

Test images are not independent when several come from one patient or are copies of one scan: resampling
images treats each copy as new evidence and gives an interval that is too narrow. The unit of resampling is
the group of records joined by a shared ``patient_id`` or ``duplicate_group`` (a copy filed under two
patients joins them); a record with neither is its own unit. The unit is named "patient" when the index
names patients, else "duplicate group" when some images share one, else "image".
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

FIELDS = (("patient", "patient_id"), ("duplicate group", "duplicate_group"))


def _present(value) -> bool:
    return value is not None and str(value) != ""


def independent_units(records: list[dict]) -> tuple[str, np.ndarray]:
    """(unit name, each record's unit number 0..K-1)."""
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for _, field in FIELDS:
        first: dict[str, int] = {}
        for i, record in enumerate(records):
            value = record.get(field)
            if _present(value):
                j = first.setdefault(str(value), i)
                parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(records))]
    _, units = np.unique(np.array(roots, dtype=np.int64), return_inverse=True)
    return _unit_name(records), units.astype(np.int64)


def _unit_name(records: list[dict]) -> str:
    """"patient" when the index names patients; "duplicate group" when some images are copies of one scan
    (the indexer gives every image a group, most of them of one); else "image"."""
    if any(_present(r.get("patient_id")) for r in records):
        return "patient"
    groups = [str(r["duplicate_group"]) for r in records if _present(r.get("duplicate_group"))]
    return "duplicate group" if len(set(groups)) < len(groups) else "image"


def one_per_unit(units: np.ndarray) -> np.ndarray:
    """The first record of each unit, in record order."""
    _, first = np.unique(units, return_index=True)
    return np.sort(first)


def cluster_bootstrap(statistic: Callable[[np.ndarray], dict], units: np.ndarray, n_boot: int,
                      seed: int = 0) -> dict[str, list[float] | None]:
    """95% percentile intervals of each figure statistic(indices) returns, resampling whole units."""
    members = [np.flatnonzero(units == u) for u in range(int(units.max()) + 1)] if len(units) else []
    if len(members) < 2 or n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), len(members))
        figures = statistic(np.concatenate([members[u] for u in picked]))
        for key, value in figures.items():
            if value is not None and math.isfinite(value):
                samples.setdefault(key, []).append(float(value))
    return {key: [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]
            for key, values in samples.items()}


def describe(n_records: int, unit: str, n_units: int) -> str:
    """'600 images from 238 independent duplicate groups' (the words every figure's interval carries)."""
    if unit == "image":
        return f"{n_records} images, each its own unit (no two share a patient or a duplicate group)"
    plural = {"patient": "patients", "duplicate group": "duplicate groups"}[unit]
    return f"{n_records} images from {n_units} independent {plural}"
