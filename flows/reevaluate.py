"""The `reevaluate_delivered` flow: re-check every delivered model on its test split (deployed nightly).

For each run in the runs folder whose status is ``delivered``, the bundle is loaded exactly as
`medbuilder predict` loads it, its test split (``workspace/index/test.json``, the images as they are now
in the prepared data folder) is predicted again, and the metric is recomputed. The result goes to
``runs/<id>/reevaluations/<YYYY-MM-DD>.json`` with the delivered metric beside it; a fall of more than
``max_drop`` (default 0.05) is flagged (``"flag": "drop"``) and logged as a warning.

Only AUROC is recomputed here (diagnosis and labelled anomaly detection: the models that give a score);
other tasks are recorded as skipped with the reason.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger, task

from medbuilder.protocol.artifacts import RunFolder, RunRecord


def delivered_runs(runs_dir: Path) -> list[RunFolder]:
    found = []
    for record_file in sorted(Path(runs_dir).glob("*/run.json")):
        try:
            record = RunRecord.model_validate_json(record_file.read_text())
        except ValueError:
            continue
        if record.status == "delivered" and (record_file.parent / "bundle" / "configs" / "metadata.json").is_file():
            found.append(RunFolder(record_file.parent))
    return found


def _auroc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


def reevaluate_run(run_dir: str, max_drop: float = 0.05, today: str | None = None) -> dict:
    """Predict the run's test split with its bundle again; write and return reevaluations/<date>.json."""
    from medbuilder.delivery.predict import load_bundle

    run = RunFolder(Path(run_dir))
    meta = run.read_json("bundle/configs/metadata.json")
    round_k = int(meta["medbuilder"]["round"])
    delivered = run.read_json(f"rounds/{round_k}/metrics.json")
    today = today or datetime.now(timezone.utc).date().isoformat()
    result = {"run_id": run.run_id, "round": round_k, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "metric": delivered.get("metric"), "delivered": delivered.get("value"), "value": None,
              "change": None, "max_drop": max_drop, "flag": None}
    test_file = run.index_dir / "test.json"
    if delivered.get("metric") != "auroc":
        result.update(status="skipped", reason=f"metric {delivered.get('metric')!r} is not recomputed (AUROC only)")
    elif not test_file.is_file():
        result.update(status="skipped", reason=f"no test index at {test_file}")
    else:
        records = json.loads(test_file.read_text())
        present = [r for r in records if Path(r["image"]).is_file()]
        result.update(n_test=len(records), n_found=len(present))
        if not present:
            result.update(status="skipped", reason="none of the test images exist any more (prepare the data again)")
        else:
            predictor = load_bundle(run.root / "bundle", output_dir=run.root / "reevaluations" / "predictions")
            predictions = predictor.predict([r["image"] for r in present])
            positive = predictions[0].get("positive_label") or delivered.get("positive_label")
            labels = [int(r["label"] == positive) for r in present]
            value = _auroc(labels, [p["score"] for p in predictions])
            if value is None:
                result.update(status="skipped", reason="the test images left hold only one class")
            else:
                change = value - float(delivered["value"])
                result.update(status="ok", value=round(value, 4), change=round(change, 4),
                              flag="drop" if change < -max_drop else None)
    run.write(f"reevaluations/{today}.json", result)
    return result


reevaluate_task = task(name="reevaluate_run", task_run_name="reevaluate-{run_dir}", persist_result=False)(reevaluate_run)


@flow(name="reevaluate_delivered", log_prints=True, persist_result=False)
def reevaluate_delivered(runs_dir: str | None = None, max_drop: float = 0.05) -> list[dict]:
    """Re-run prediction of every delivered run's bundle on its test split; flag a drop > max_drop."""
    from medbuilder.settings import get_settings

    logger = get_run_logger()
    folder = Path(runs_dir) if runs_dir else get_settings().runs_dir
    results = []
    for run in delivered_runs(folder):
        try:
            result = reevaluate_task(str(run.root), max_drop)
        except Exception as err:  # one broken run must not hide the others
            logger.error("run %s could not be re-evaluated: %s", run.run_id, err)
            result = {"run_id": run.run_id, "status": "failed", "reason": f"{type(err).__name__}: {err}"}
        if result.get("flag") == "drop":
            logger.warning("run %s: %s fell from %.3f to %.3f (more than %.2f)", run.run_id, result["metric"],
                           result["delivered"], result["value"], max_drop)
        results.append(result)
    logger.info("re-evaluated %d delivered run(s) in %s", len(results), folder)
    return results
