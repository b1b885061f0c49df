"""The `reevaluate_delivered` flow: re-check every delivered model on its test split (deployed nightly).

Each delivered run is one task (``medbuilder/lifecycle/reevaluate.py``): its bundle predicts its test split
again and the metric is recomputed; a fall of more than ``max_drop`` is flagged and logged as a warning.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from medbuilder.lifecycle.reevaluate import delivered_runs, reevaluate_run
from medbuilder.settings import get_settings

reevaluate_task = task(name="reevaluate_run", task_run_name="reevaluate-{run_dir}", persist_result=False)(reevaluate_run)


@flow(name="reevaluate_delivered", log_prints=True, persist_result=False)
def reevaluate_delivered(runs_dir: str | None = None, max_drop: float = 0.05) -> list[dict]:
    """Re-run prediction of every delivered run's bundle on its test split; flag a drop > max_drop."""
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
