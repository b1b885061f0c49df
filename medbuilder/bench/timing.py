"""Where a bench build's seconds went: per stage, the evaluation's split, and the fixed part against its budget.

The fixed part is what a build costs beyond the work any pipeline does: end-to-end seconds less the
delivered training run (``python train.py``), the data preparation into the preprocessed store
before it, and the evaluation's model inference (forward passes). What is left is Prefect, the
agents, their checks, the gates, the interpretability report's own work and delivery.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FIXED_BUDGET_S = 15.0
REPORT_BUDGET_S = 10.0
STAGE_COLUMNS = ["task_manager", "prepare_data", "data_engineer", "module_architect", "model_trainer", "evaluate",
                 "refine", "deliver"]


def stage_group(stage: str) -> str:
    """evaluate-0, evaluate-1 -> evaluate; refine-1 -> refine; the roles keep their names."""
    return re.sub(r"-\d+$", "", stage)


def evaluation_seconds(run_dir: Path) -> list[dict]:
    """Each evaluated round's seconds block (report/round-<k>/summary.json): evaluation, model inference,
    interpretability report, test images."""
    out = []
    for summary in sorted(Path(run_dir).glob("report/round-*/summary.json"), key=lambda p: int(p.parent.name[6:])):
        block = json.loads(summary.read_text()).get("seconds")
        if isinstance(block, dict):
            out.append({"round": int(summary.parent.name[6:]), **block})
    return out


def fixed_part(row: dict) -> dict | None:
    """The build's seconds outside the training run, its data preparation and the evaluation's model inference."""
    e2e, training = row.get("end_to_end_seconds"), row.get("training_run_seconds")
    if e2e is None or training is None:
        return None
    preparation = (row.get("data_ready") or {}).get("preprocess_seconds") or 0.0
    inference = sum(e.get("model_inference") or 0.0 for e in row.get("evaluation") or [])
    return {"seconds": round(e2e - training - preparation - inference, 2), "end_to_end": e2e, "training_run": training,
            "data_preparation": preparation, "model_inference": round(inference, 2), "budget": FIXED_BUDGET_S}


def stage_row(row: dict) -> dict[str, float]:
    """Seconds per stage group, and what no stage holds (Prefect's start and stop, the gates, the flow)."""
    out: dict[str, float] = {}
    for stage, rec in (row.get("stages") or {}).items():
        group = stage_group(stage)
        out[group] = round(out.get(group, 0.0) + (rec.get("seconds") or 0.0), 2)
    if row.get("end_to_end_seconds") is not None:
        out["outside stages"] = round(row["end_to_end_seconds"] - sum(out.values()), 2)
    return out


def stage_seconds_table(runs: list[dict]) -> list[str]:
    """Markdown: one line per run, seconds per stage group."""
    columns = [c for c in STAGE_COLUMNS if any(c in stage_row(r) for r in runs)] + ["outside stages"]
    lines = ["| case | repeat | " + " | ".join(columns) + " | end-to-end |", "|---|---|" + "---|" * (len(columns) + 1)]
    for run in runs:
        seconds = stage_row(run)
        cells = [f"{seconds[c]:.1f}" if c in seconds else "-" for c in columns]
        e2e = run.get("end_to_end_seconds")
        cells.append(f"{e2e:.1f}" if e2e is not None else "-")
        lines.append(f"| {run['case']} | {run.get('repeat', 1)} | " + " | ".join(cells) + " |")
    return lines


def budget_lines(runs: list[dict]) -> list[str]:
    """Per run: the fixed part against its budget, and the evaluation split with the report's budget."""
    lines = []
    for run in runs:
        fixed = run.get("fixed") or fixed_part(run)
        if fixed:
            verdict = "within" if fixed["seconds"] <= fixed["budget"] else "over"
            lines.append(f"- {run['case']} (repeat {run.get('repeat', 1)}): fixed part {fixed['seconds']:.1f} s, "
                         f"{verdict} its {fixed['budget']:.0f} s budget (end-to-end {fixed['end_to_end']:.1f} - "
                         f"training run {fixed['training_run']:.1f} - data preparation "
                         f"{fixed['data_preparation']:.1f} - evaluation's model inference "
                         f"{fixed['model_inference']:.1f})")
        for ev in run.get("evaluation") or []:
            report = ev.get("interpretability_report")
            budget = (f", {'within' if report <= REPORT_BUDGET_S else 'over'} its {REPORT_BUDGET_S:.0f} s budget"
                      if report is not None else "")
            lines.append(f"  - round {ev['round']} evaluation {ev.get('evaluation')} s on {ev.get('n_test')} test "
                         f"images: model inference {ev.get('model_inference')} s; interpretability report "
                         f"{report if report is not None else '-'} s{budget}")
    return lines
