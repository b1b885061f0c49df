"""Metrics per subgroup (site, scanner, sex, age band) with intervals over independent units, and the gap.

The attributes come from the index (``attributes`` of each record: the layout's table columns or DICOM tags;
and the older single ``group``). Ages become bands (under 40, 40-59, 60-79, 80 and over; DICOM's '065Y' is
read as 65). For each attribute: per value, the count of images and independent units, AUROC with its 95%
interval (bootstrap over whole units inside the subgroup), sensitivity and specificity of the class with the
highest probability; and the largest AUROC gap between two values that each hold at least ``MIN_IMAGES``
images of both classes, with a bootstrap interval of that difference (units resampled within each subgroup).
"""

from __future__ import annotations

import re

import numpy as np

from medbuilder.review.clustered import cluster_bootstrap, independent_units
from medbuilder.review.metrics import auroc

MIN_IMAGES = 10
AGE_BANDS = ((0, 40, "under 40"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80 and over"))


def age_band(value: str) -> str | None:
    found = re.match(r"\s*0*(\d+(?:\.\d+)?)\s*([YMWD])?", str(value), re.IGNORECASE)
    if not found:
        return None
    years = float(found[1]) / {"Y": 1, "M": 12, "W": 52, "D": 365}[(found[2] or "Y").upper()]
    return next(name for lo, hi, name in AGE_BANDS if lo <= years < hi)


def attribute_values(records: list[dict]) -> dict[str, list[str | None]]:
    """attribute -> each record's value (None where it has none), ages as bands."""
    names = sorted({n for r in records for n in (r.get("attributes") or {})})
    out = {}
    for name in names:
        values = [(r.get("attributes") or {}).get(name) for r in records]
        out[name] = [age_band(v) if name == "age" and v is not None else (str(v) if v is not None else None)
                     for v in values]
    groups = [str(r["group"]) if r.get("group") else None for r in records]
    if any(groups) and groups not in out.values():
        out["group"] = groups
    return {name: values for name, values in out.items() if len({v for v in values if v}) >= 2}


def _rates(y: np.ndarray, called: np.ndarray) -> dict:
    return {"sensitivity": float(called[y].mean()) if y.any() else None,
            "specificity": float((~called[~y]).mean()) if (~y).any() else None}


def _one_value(idx: np.ndarray, y, s, called, units, n_boot: int, seed: int) -> dict:
    _, local = np.unique(units[idx], return_inverse=True)
    row = {"n": int(len(idx)), "n_units": int(local.max() + 1) if len(idx) else 0, "positives": int(y[idx].sum()),
           "auroc": auroc(y[idx], s[idx]), **_rates(y[idx], called[idx])}
    boot = cluster_bootstrap(lambda i: {"auroc": auroc(y[idx][i], s[idx][i])}, local, n_boot, seed)
    row["auroc_ci95"] = boot.get("auroc")
    return row


def _gap(values: list, rows: dict, y, s, units, n_boot: int, seed: int) -> dict | None:
    """The largest AUROC difference between two eligible values, with a bootstrap interval."""
    eligible = [v for v, row in rows.items() if row["n"] >= MIN_IMAGES and row["auroc"] is not None
                and 0 < row["positives"] < row["n"]]
    if len(eligible) < 2:
        return None
    high = max(eligible, key=lambda v: rows[v]["auroc"])
    low = min(eligible, key=lambda v: rows[v]["auroc"])
    members = {v: np.flatnonzero(np.array([x == v for x in values])) for v in (high, low)}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        figures = []
        for v in (high, low):
            idx = members[v]
            groups = [idx[units[idx] == u] for u in np.unique(units[idx])]
            picked = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
            figures.append(auroc(y[picked], s[picked]))
        if None not in figures:
            diffs.append(figures[0] - figures[1])
    ci = [round(float(v), 4) for v in np.percentile(diffs, [2.5, 97.5])] if diffs else None
    return {"between": [high, low], "auroc_gap": round(rows[high]["auroc"] - rows[low]["auroc"], 4), "ci95": ci}


def subgroup_metrics(records: list[dict], scores: list[float], called: list[bool], positive: str,
                     n_boot: int = 500, seed: int = 0) -> dict:
    """{attribute: {"values": {value: figures}, "gap": ..., "missing": n}} for a binary model's test records."""
    y = np.array([str(r["label"]) == positive for r in records])
    s, c = np.array(scores, dtype=float), np.array(called, dtype=bool)
    _, units = independent_units(records)
    out = {}
    for name, values in attribute_values(records).items():
        rows = {}
        for value in sorted({v for v in values if v}):
            idx = np.flatnonzero(np.array([v == value for v in values]))
            rows[value] = _one_value(idx, y, s, c, units, n_boot, seed)
        out[name] = {"values": rows, "missing": sum(v is None for v in values),
                     "gap": _gap(values, rows, y, s, units, n_boot, seed)}
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(subgroups: dict, unit: str | None = None) -> list[str]:
    """The subgroup section: one table per attribute, then its largest gap."""
    if not subgroups:
        return ["The test records carry no site, scanner, sex, age or group with two values or more."]
    lines = [f"Intervals resample whole independent units ({unit or 'images'}) inside each subgroup."]
    for name, block in subgroups.items():
        missing = f" ({block['missing']} test images without a value)" if block["missing"] else ""
        lines += ["", f"**{name}**{missing}",
                  "", "| value | images | units | AUROC | 95% CI | sensitivity | specificity |",
                  "|---|---|---|---|---|---|---|"]
        for value, row in block["values"].items():
            ci = row.get("auroc_ci95")
            lines.append(f"| {value} | {row['n']} | {row['n_units']} | {_fmt(row['auroc'])} | "
                         f"{f'{ci[0]:.3f} to {ci[1]:.3f}' if ci else '-'} | {_fmt(row['sensitivity'])} | "
                         f"{_fmt(row['specificity'])} |")
        gap = block.get("gap")
        if gap:
            ci = gap.get("ci95")
            interval = f" (95% CI {ci[0]:.3f} to {ci[1]:.3f}; an interval that holds 0 is no clear gap)" if ci else ""
            lines += ["", f"Largest gap: AUROC {gap['between'][0]} minus {gap['between'][1]} = "
                          f"{gap['auroc_gap']:.3f}{interval}"]
        else:
            lines += ["", f"No gap computed: fewer than two values hold {MIN_IMAGES} images of both classes."]
    return lines


def for_predictions(records: list[dict], predictions: list[dict], positive: str, cfg: dict) -> dict:
    """Subgroup metrics of `records` from predictions with 'image' and 'probabilities' (matched by image)."""
    from medbuilder.review.verified_metric import _boot

    by_image = {str(p["image"]): p for p in predictions}
    kept = [r for r in records if str(r["image"]) in by_image]
    scores = [float(by_image[str(r["image"])]["probabilities"][positive]) for r in kept]
    n_boot, seed = _boot(cfg)
    return subgroup_metrics(kept, scores, [s >= 0.5 for s in scores], positive, min(n_boot, 500), seed)


def for_round(run, snapshot, positive: str) -> dict:
    """The round's subgroup metrics on the fixed test split, written to report/round-<k>/subgroups.json."""
    from medbuilder.review.verified_metric import fixed_test_split, read_predictions

    records, _ = fixed_test_split(run)
    predictions, cfg = read_predictions(snapshot)
    return for_predictions(records, predictions, positive, cfg)
