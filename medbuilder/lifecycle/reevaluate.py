"""Re-check a delivered model on its test split (the nightly `reevaluate_delivered` flow runs this per run).

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

from medbuilder.protocol.artifacts import RunRecord
from medbuilder.protocol.run_folder import RunFolder


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


def reevaluate_run(run_dir: str, max_drop: float = 0.05, today: str | None = None) -> dict:
    """Predict the run's test split with its bundle again; write and return reevaluations/<date>.json."""
    from medbuilder.delivery.predict import load_bundle
    from medbuilder.review.metrics import auroc

    run = RunFolder(Path(run_dir))
    meta = run.read_json("bundle/configs/metadata.json")
    round_k = int(meta["medbuilder"]["round"])
    delivered = json.loads((run.round_dir(round_k) / "metrics.json").read_text())
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
            value = auroc(labels, [p["score"] for p in predictions])
            if value is None:
                result.update(status="skipped", reason="the test images left hold only one class")
            else:
                change = value - float(delivered["value"])
                result.update(status="ok", value=round(value, 4), change=round(change, 4),
                              flag="drop" if change < -max_drop else None)
    run.write(f"reevaluations/{today}.json", result)
    return result
