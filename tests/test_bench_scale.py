"""`medbuilder bench scale`: the generated set, the growth figures, and one real build measured end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medbuilder.bench import scale, scale_data
from medbuilder.cli import app
from medbuilder.protocol.datacard import Datacard


def test_generated_set_is_balanced_valid_and_reused(tmp_path):
    root, n = scale_data.generated_set(tmp_path / "data", tmp_path / "cards", 7, echo=lambda *_: None)
    assert n == 6
    assert sorted(p.parent.name for p in root.rglob("*.png")) == ["effusion"] * 3 + ["normal"] * 3
    card = Datacard.model_validate_json((tmp_path / "cards" / "synth-cxr-scale.json").read_text())
    assert card.provenance == "generated" and "GENERATED" in card.description
    first = root / "normal" / "scale_000000.png"
    stamp = first.stat().st_mtime_ns
    scale_data.generated_set(tmp_path / "data", tmp_path / "cards", 6, echo=lambda *_: None)
    assert first.stat().st_mtime_ns == stamp  # same n and seed: drawn once


def test_growth_exponents_stay_within_one_dataset():
    def row(point, dataset, images, seconds):
        return {"point": point, "dataset": dataset, "images": images, "build": {"seconds": seconds},
                "cache": {"fill_seconds": seconds / 10}}

    rows = [row("a", "br35h", 500, 40.0), row("b", "br35h", 1000, 80.0), row("c", "gen", 2000, 50.0),
            row("d", "gen", 20000, 500.0)]
    pairs = scale.growth(rows)
    assert [(g["from"], g["to"]) for g in pairs] == [("a", "b"), ("c", "d")]
    assert pairs[0]["build seconds"] == 1.0 and pairs[1]["store fill seconds"] == 1.0
    assert pairs[0]["training run"] is None  # missing figures give no exponent
    assert scale.exponent(100, 10.0, 400, 20.0) == 0.5


def test_bench_scale_measures_a_real_build_and_its_store(tmp_path):
    out = tmp_path / "scale"
    result = CliRunner().invoke(app, ["bench", "scale", "--sizes", "", "--generated", "12", "--epochs", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "scale.json").read_text())["rows"][0]
    assert row["point"] == "generated-12" and row["provenance"] == "generated" and row["images"] == 12
    assert row["build"]["exit"] == 0 and not row.get("error"), row
    assert row["n_train"] + row["n_test"] == 12 and row["epochs"] == 1
    assert row["build"]["peak_tree_mib"] > 100  # a Python process with torch: the sampler saw the tree
    assert 0 < row["training_run_seconds"] < row["build"]["seconds"]
    cache = row["cache"]
    assert cache["made"] == 12 and cache["hits"] == 12 and cache["store_mib"] > 0, cache
    assert cache["peak_mib"] >= cache["before_mib"] > 0
    assert "generated-12 (generated) | 12 | " in result.output
