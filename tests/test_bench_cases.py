"""`medbuilder bench` (build cases against reference pipelines): the success rule and the table (fast), and one
quick case end to end through the CLI (slow; quick settings: the figures are not the benchmark's, only its workings)."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from flow_helpers import MEDBUILDER
from medbuilder.bench.cases import CASES, relative_gap, select, succeeded
from medbuilder.bench.report import render, summarise, write


def test_success_rule_is_within_five_percent_relative_or_better():
    assert succeeded("delivered", 0.96, 1.0)
    assert succeeded("delivered", 0.95, 1.0)
    assert not succeeded("delivered", 0.94, 1.0)
    assert succeeded("delivered", 0.9, 0.8)  # better than the reference
    assert not succeeded("error", 0.99, 0.99) and not succeeded("delivered", None, 0.9)
    assert not succeeded("delivered", 0.9, None)
    assert relative_gap(0.38, 0.4) == pytest.approx(0.05) and relative_gap(0.5, 0.0) is None


def test_case_selection():
    assert [c.name for c in select(None)] == list(CASES)
    assert [c.name for c in select(["synth-seg3d,br35h-diagnosis", "synth-seg3d"])] == ["synth-seg3d", "br35h-diagnosis"]
    with pytest.raises(ValueError, match="unknown case chest-ct.*synth-seg3d"):
        select(["chest-ct"])
    assert CASES["synth-cxr-drain"].request == "detect pneumothorax; the model must not rely on chest drains"


def _run(case: str, value: float, ref: float, status: str = "delivered") -> dict:
    role = {"actions": 5, "iterations": 1, "tokens": 0, "seconds": 2.0}
    return {"case": case, "task": "diagnosis", "dataset": "br35h", "provenance": "real", "status": status,
            "metric": "auroc", "value": value, "reference": {"value": ref, "seconds": 10.0},
            "success": succeeded(status, value, ref), "end_to_end_seconds": 50.0, "time_ratio": 5.0, "speed_ratio": 1.2,
            "training_run_seconds": 40.0, "other_seconds": 10.0, "training_ratio": 4.0,
            "roles": {r: dict(role) for r in ("task_manager", "data_engineer", "module_architect", "model_trainer")},
            "repeat": 1}


def test_table_renders_each_case_with_completion_roles_and_ratios(tmp_path):
    results = {"core": "offline", "repeats": 2, "quick": True, "tolerance": 0.05, "cases": ["a", "b", "c"],
               "seconds": 1.0, "runs": [{**_run("a", 0.96, 0.97), "units": "20 images from 14 independent duplicate groups"},
                                        {**_run("a", 0.5, 0.97), "repeat": 2},
                                        _run("b", 0.7, 0.9, status="error"),
                                        {"case": "c", "task": "segmentation", "dataset": "brain-mask-3d",
                                         "provenance": "real", "status": "error", "error": "source missing",
                                         "repeat": 1}]}
    results["runs"][0].update(
        training_prepared_ratio=1.02, data_ready={"preprocess_seconds": 3.0},
        stages={"task_manager": {"seconds": 2.0}, "evaluate-0": {"seconds": 4.0}, "evaluate-1": {"seconds": 3.0}},
        evaluation=[{"round": 0, "evaluation": 4.0, "model_inference": 1.5, "interpretability_report": 12.5,
                     "n_test": 600}],
        baseline={"metric": "auroc", "value": 0.91, "seconds": 49.0, "budget_seconds": 50.0, "over_budget": False,
                  "epochs": 0.25, "batches": 3, "recipe": "MONAI DenseNet121"})
    results["runs"][1]["baseline"] = {"error": "timed out after 600 s"}
    table = render(results)
    assert "| a | real | 2/2 | 1/2 | 5.0 / 1.0 |" in table
    assert "| b | real | 0/1 | 0/1 |" in table
    assert "| 50 | 40 | 10 | 10 | 5.00 | 4.00 | 1.02 | 1.20 | - | 0.910 |" in table and "QUICK" in table
    assert "training run <= 1.05 x the reference in 0 of 2 cases, 1 of 2 with its data preparation" in table
    assert ("- a: medbuilder 0.730 vs 0.910 (auroc) for MONAI DenseNet121: 0.25 epochs (3 batches) in 49.0 s of "
            "50.0 s") in table
    assert "| a | 1 | 2.0 | 7.0 | 41.0 | 50.0 |" in table  # evaluate-0 and -1 summed; the rest outside stages
    # the fixed part: 50 end-to-end - 40 training - 3 preparation - 1.5 inference
    assert "fixed part 5.5 s, within its 15 s budget" in table
    assert "interpretability report 12.5 s, over its 10 s budget" in table
    assert "| c | real | 0/1 | 0/1 | - / - |" in table
    assert "- a: 20 images from 14 independent duplicate groups" in table  # a case that could not even start still gets its row
    files = write(results, tmp_path)
    assert json.loads(files["json"].read_text())["summary"][2]["completed"] == 0
    assert "![bench-metrics.png]" in files["markdown"].read_text() and "- c: source missing" in files["markdown"].read_text()
    assert (tmp_path / "bench-metrics.png").stat().st_size > 1000
    rows = summarise(results)
    assert rows[0]["value"] == pytest.approx(0.73) and rows[0]["reference"] == pytest.approx(0.97)


def test_shortcut_subcommand_still_answers_help():
    done = subprocess.run([MEDBUILDER, "bench", "shortcut", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--case" in done.stdout and "--strategy" in done.stdout


@pytest.mark.slow
def test_quick_case_through_the_cli(tmp_path):
    env = {**os.environ, "MEDBUILDER_DATA_DIR": str(tmp_path / "data"), "MEDBUILDER_RUNS_DIR": str(tmp_path / "runs"),
           "MEDBUILDER_TRAIN_TIME_LIMIT_S": "5", "MEDBUILDER_ECHO_SCRIPTS": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    out = tmp_path / "out"
    done = subprocess.run([MEDBUILDER, "bench", "--quick", "--cases", "br35h-diagnosis", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "| br35h-diagnosis | real | 1/1 |" in done.stdout and "speed ratio" in done.stdout
    results = json.loads((out / "bench.json").read_text())
    assert results["quick"] is True and results["cases"] == ["br35h-diagnosis"]
    run = results["runs"][0]
    assert run["status"] == "delivered" and run["metric"] == "auroc" and 0.0 <= run["value"] <= 1.0
    assert set(run["roles"]) == {"task_manager", "data_engineer", "module_architect", "model_trainer"}
    for role in run["roles"].values():
        assert role["iterations"] >= 1 and role["actions"] >= 1 and "tokens" in role and "seconds" in role
    assert {"task_manager", "model_trainer", "evaluate-0", "deliver"} <= set(run["stages"])
    ref = run["reference"]
    assert "error" not in ref, ref
    assert ref["metric"] == "auroc" and ref["seconds"] > 0 and ref["images_per_second"] > 0
    assert ref["epochs"] == run["generated"]["epochs"]
    for key in ("time_ratio", "speed_ratio", "end_to_end_seconds", "training_run_seconds", "training_ratio",
                "other_seconds"):
        assert run[key] is not None and math.isfinite(run[key]) and run[key] > 0
    assert isinstance(run["success"], bool)
    base = run["baseline"]  # MONAI's standard recipe, given the build's end-to-end seconds
    assert "error" not in base, base
    assert base["metric"] == "auroc" and base["epochs"] >= 1 and "DenseNet121" in base["recipe"]
    assert base["budget_seconds"] == pytest.approx(run["end_to_end_seconds"], abs=0.1)
    fixed = run["fixed"]
    assert 0 < fixed["seconds"] < run["end_to_end_seconds"] and run["evaluation"][0]["model_inference"] > 0
    assert "Quality at equal time" in done.stdout and "fixed part" in done.stdout
    assert "| case | repeat | task_manager |" in done.stdout
    if "PREFECT_API_URL" not in env:  # the bench starts the local server once, before the first case
        assert results["prefect_start_seconds"] > 0 and "local Prefect server started once" in done.stdout
    again = results["cache_check"]["run"]  # the second build's own split: warm imports
    assert again["repeat"] == "again" and again["fixed"]["seconds"] < fixed["seconds"]
    assert "| br35h-diagnosis | again |" in done.stdout
    assert (out / "bench.md").read_text().count("![") >= 1 and (out / "bench-metrics.png").stat().st_size > 1000
    assert str(tmp_path / "data" / "bench-quick") == results["data_dir"]
    check = results["cache_check"]  # the same build again reads what the first one preprocessed
    assert check["first"]["made"] > 0 and check["second"]["made"] == 0 and check["second"]["hits"] >= check["first"]["made"]
    assert 0 < check["ratio"] < 1 and "Preprocessed store (br35h-diagnosis): data ready" in done.stdout


def test_bench_epochs_override_the_model_trainers_choice_and_the_cap_still_holds(tmp_path):
    import template_data
    from medbuilder.agents.hyperparameters import choose_hyperparameters
    from medbuilder.protocol.index import DataIndex

    index = DataIndex.read(template_data.br35h_index(tmp_path, per_class=6), "diagnosis")
    own, _ = choose_hyperparameters("diagnosis", index, "2D")
    forced, reasons = choose_hyperparameters("diagnosis", index, "2D", epochs=own["epochs"] + 7)
    assert forced["epochs"] == own["epochs"] + 7 and any("MEDBUILDER_TRAIN_EPOCHS" in r for r in reasons)
    capped, _ = choose_hyperparameters("diagnosis", index, "2D", max_epochs=3, epochs=50)
    assert capped["epochs"] == 3
