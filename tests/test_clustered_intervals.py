"""Intervals over independent units: which records form a unit, and a simulation on generated data with
planted copies, where the per-image interval falls short of 95% coverage and the clustered one does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medbuilder.review.clustered import cluster_bootstrap, describe, independent_units, one_per_unit


def test_a_shared_patient_or_duplicate_group_joins_records_into_one_unit():
    records = [{"patient_id": "p1"}, {"patient_id": "p1"}, {"patient_id": "p2", "duplicate_group": 7},
               {"patient_id": "p3", "duplicate_group": 7}, {}, {"patient_id": ""}]
    unit, units = independent_units(records)
    assert unit == "patient"
    assert units[0] == units[1] and units[2] == units[3]  # p2 and p3 hold copies of one scan: one unit
    assert len(set(units.tolist())) == 4 and units[4] != units[5]
    assert one_per_unit(units).tolist() == [0, 2, 4, 5]
    assert independent_units([{"duplicate_group": "a"}, {"duplicate_group": "a"}, {}])[0] == "duplicate group"
    assert independent_units([{}, {}])[0] == "image"
    assert independent_units([{"duplicate_group": 1}, {"duplicate_group": 2}])[0] == "image"  # no copies
    assert describe(600, "duplicate group", 238) == "600 images from 238 independent duplicate groups"


def _planted_copies(rng, n_units: int, truth: float) -> tuple[np.ndarray, np.ndarray]:
    """Generated: each unit (one scan) is right or wrong as a whole and appears 1 to 9 times in the test set."""
    right = rng.random(n_units) < truth
    copies = rng.integers(1, 10, n_units)
    return np.repeat(right, copies).astype(float), np.repeat(np.arange(n_units), copies)


def test_clustered_intervals_are_wider_and_cover_the_truth_where_per_image_ones_fall_short():
    rng, truth, trials = np.random.default_rng(0), 0.7, 200
    covered = {"clustered": 0, "per image": 0}
    widths = {"clustered": [], "per image": []}
    for trial in range(trials):
        correct, units = _planted_copies(rng, 60, truth)
        statistic = lambda idx: {"value": float(correct[idx].mean())}  # noqa: E731
        for kind, resampled in (("clustered", units), ("per image", np.arange(len(units)))):
            low, high = cluster_bootstrap(statistic, resampled, 300, seed=trial)["value"]
            covered[kind] += low <= truth <= high
            widths[kind].append(high - low)
    coverage = {kind: hits / trials for kind, hits in covered.items()}
    ratio = np.mean(widths["clustered"]) / np.mean(widths["per image"])
    print(f"\ncoverage of the true accuracy {truth} over {trials} generated test sets (60 scans, 1-9 copies "
          f"each): clustered {coverage['clustered']:.3f}, per image {coverage['per image']:.3f}; "
          f"mean width ratio {ratio:.2f}")
    assert 0.90 <= coverage["clustered"] <= 0.99
    assert coverage["per image"] < 0.8 and ratio > 1.6


def test_the_verified_metric_resamples_duplicate_groups(tmp_path):
    """Generated: the same 40 test images, first as 40 scans, then as 10 scans with 4 copies each (a copy has
    its scan's label and prediction)."""
    from test_verified_metric import _run

    from medbuilder.review.verified_metric import fix_test_split, verify

    run, predictions = _run(tmp_path, n=40)
    records = json.loads((run.root / "fixed_split" / "test.json").read_text())
    source = list(range(10))  # ten scans, both classes, their scores overlapping
    grouped = [{**r, "label": records[source[i // 4]]["label"], "duplicate_group": i // 4} for i, r in enumerate(records)]
    copied = [{**predictions[source[i // 4]], "image": r["image"], "label": grouped[i]["label"]}
              for i, r in enumerate(records)]
    (run.workspace / "predictions.json").write_text(json.dumps(copied))
    results = {}
    for name, index in (("as scans", [{k: v for k, v in r.items() if k != "duplicate_group"} for r in grouped]),
                        ("as copies", grouped)):
        (run.index_dir / "test.json").write_text(json.dumps(index))
        (run.root / "fixed_split" / "manifest.json").unlink()
        fix_test_split(run)
        results[name] = verify(run, run.workspace, "diagnosis", None)
    plain, clustered = results["as scans"], results["as copies"]
    assert plain["unit"] == "image" and plain["n_units"] == 40 and 0 < plain["value"] < 1
    assert clustered["value"] == pytest.approx(plain["value"])
    assert clustered["unit"] == "duplicate group" and clustered["n_units"] == 10
    assert clustered["units_note"] == "40 images from 10 independent duplicate groups"
    assert clustered["one_per_unit"]["n"] == 10
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clustered["ci95"]) > width(plain["ci95"])
    assert width(clustered["accuracy_ci95"]) > width(plain["accuracy_ci95"])
