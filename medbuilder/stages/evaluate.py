"""evaluate: round k's metrics with intervals, figures and interpretability report (``review/evaluate.py``)."""

from __future__ import annotations

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.stages.record import run_stage


def evaluate_stage(run_dir: str, round_k: int) -> dict:
    from medbuilder.review.evaluate import evaluate_round

    run = RunFolder(run_dir)
    return run_stage(run, f"evaluate-{round_k}", lambda: evaluate_round(run, round_k))
