"""`medbuilder bench shortcut` end to end on a small subset of the generated drain set (quick settings:
the figures are not the benchmark's, only its workings)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from flow_helpers import MEDBUILDER

pytestmark = pytest.mark.slow


def test_bench_prints_measures_before_and_after(tmp_path):
    env = {**os.environ, "MEDBUILDER_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([MEDBUILDER, "bench", "shortcut", "--case", "synth-cxr-drain", "--limit", "10",
                           "--epochs", "2", "--strategy", "counterfactual_aug+group_balanced", "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| baseline |" in done.stdout and "| counterfactual_aug+group_balanced |" in done.stdout
    results = json.loads((tmp_path / "out" / "shortcut.json").read_text())["cases"]["synth-cxr-drain"]
    assert set(results["strategies"]) == {"baseline", "counterfactual_aug+group_balanced"}
    for row in results["strategies"].values():
        assert set(row["measures"]) == {"counterfactual_flip_rate", "attribution_share", "subgroup_gap",
                                        "confounded_fpr"}
        assert 0.0 <= row["auroc"] <= 1.0 and row["train_seconds"] > 0 and row["measure_seconds"] > 0
    strategy = results["strategies"]["counterfactual_aug+group_balanced"]
    seconds = {k: r["prepare_seconds"] + r["train_seconds"] + r["measure_seconds"]
               for k, r in results["strategies"].items()}
    assert all("preprocessed cache: " in r["prepared"] for r in results["strategies"].values())
    assert strategy["round_ratio"] == pytest.approx(seconds["counterfactual_aug+group_balanced"] / seconds["baseline"],
                                                    abs=0.01)
    assert "round / round 0 |" in done.stdout and "x round 0's in" in done.stdout
    assert "flip_before_at_least_0.5" in results["targets"]
    bad = subprocess.run([MEDBUILDER, "bench", "shortcut", "--case", "chest-ct"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown case" in bad.stderr and "synth-cxr-drain" in bad.stderr
