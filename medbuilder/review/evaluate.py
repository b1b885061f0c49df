"""Evaluation of one training round: snapshot, metrics with intervals, figures, interpretability.

Round k's files are copied to ``rounds/<k>/`` (metrics, predictions, config,
checkpoint) so that refinement rounds can be compared and the approved round
delivered; figures, the interpretability report (saliency, calibration,
subgroups, shortcut measures: ``interpret.py``) and a summary go to
``report/round-<k>/``. The summary carries the markdown sections the review gate
shows: the shortcut measures, the objective's status and, after round 0, a
before/after table of every round.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path


from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow
from medbuilder.review import inference_clock, metadata_reliance, operating_point, plots, subgroups, temperature
from medbuilder.review.compare import interpretability_sections
from medbuilder.review.verified_metric import verified_metrics, verify

SNAPSHOT = ["metrics.json", "predictions.json", "config.json", "train_log.jsonl", "checkpoints/model.pt"]
FILL_RECORD = "template_fill.json"  # medbuilder's record of the fill, in the run folder (no agent writes it)


class InterpretabilityError(RuntimeError):
    """A round's saliency and shortcut measures could not be made: the review would lack what it needs."""


def snapshot_round(run: RunFolder, k: int) -> Path:
    """Copy the round's files from the workspace; a link or a hard-linked file there is refused, not followed."""
    target = run.round_dir(k)
    for rel in SNAPSHOT:
        if os.path.lexists(run.workspace / rel):
            try:
                copy_nofollow(run.workspace, rel, target / rel)
            except UntrustedFileError as err:
                raise ValueError(f"the round's {rel} cannot be kept: {err}. Write it as a plain file in the "
                                 "workspace (train.py does) and evaluate again") from None
    if run.exists(FILL_RECORD):
        shutil.copyfile(run.path(FILL_RECORD), target / FILL_RECORD)
    _put_in_medbuilders_figure(run, target, k)
    return target


def _put_in_medbuilders_figure(run: RunFolder, round_dir: Path, k: int) -> None:
    """rounds/k/metrics.json gets medbuilder's figure (the script's file is kept as reported_metrics.json)."""
    reported = json.loads((round_dir / "metrics.json").read_text())
    checked = verify(run, round_dir, run.plan().task, reported)
    if checked["problems"]:
        raise ValueError(f"round {k}'s predictions do not give its metric: {'; '.join(checked['problems'])}")
    (round_dir / "reported_metrics.json").write_text(json.dumps(reported, indent=1))
    (round_dir / "metrics.json").write_text(json.dumps(verified_metrics(reported, checked), indent=1))


def _figures(metrics: dict, predictions: list[dict], folder: Path) -> list[str]:
    made = []
    if metrics["metric"] == "auroc" and predictions and "score" in predictions[0]:
        positive = metrics.get("positive_label")
        labels = [int(p["label"] == positive) if positive else int(p.get("target", 0)) for p in predictions]
        if 0 < sum(labels) < len(labels):
            made.append(plots.roc_png(labels, [p["score"] for p in predictions], metrics["value"], folder / "roc.png"))
    if metrics.get("confusion_matrix"):
        names = sorted(metrics.get("label_dict", {}), key=metrics["label_dict"].get)
        made.append(plots.confusion_png(metrics["confusion_matrix"], names, folder / "confusion.png"))
    if metrics["metric"] == "dice" and metrics.get("per_case_dice"):
        made.append(plots.dice_png(metrics["per_case_dice"], folder / "dice.png"))
    return [str(p.relative_to(folder.parent.parent)) for p in made]


def objective_and_roi(run: RunFolder) -> tuple[dict | None, str | None]:
    """The current objective (objective.json) and the region of interest of its confounder; without
    an objective, the first region-of-interest confounder the datacard names (measured, not enforced)."""
    objective = run.objective()
    objective = objective.model_dump(mode="json") if objective else None
    card = run.datacard()
    confounders = [c.model_dump(mode="json") for c in card.confounders] if card else []
    if objective:
        named = next((c for c in confounders if c["name"] == objective["confounder"]), {})
        return objective, named.get("roi")
    return None, next((c["roi"] for c in confounders if c.get("roi")), None)


def interpretation_kind(metrics: dict, snapshot: Path) -> str | None:
    """classification (2D diagnosis: saliency and shortcut measures), segmentation (occlusion), or None."""
    config = json.loads((snapshot / "config.json").read_text()) if (snapshot / "config.json").exists() else {}
    if metrics.get("task") == "diagnosis" and int(config.get("spatial_dims", 2)) == 2:
        return "classification"
    return "segmentation" if metrics.get("task") == "segmentation" else None


def interpret(run: RunFolder, k: int, snapshot: Path, folder: Path, kind: str) -> dict:
    """Run the interpretability report; when it cannot run, the evaluation fails (the stage says why)."""
    from medbuilder.review.interpret import interpret_round, load_predictor
    from medbuilder.review.segmentation_saliency import interpret_segmentation

    objective, roi = objective_and_roi(run)
    try:
        if kind == "segmentation":
            report = interpret_segmentation(run.workspace, run.index_dir, folder, snapshot=snapshot)
            return {"kind": kind, "cases": report["cases"], "report": f"report/round-{k}/interpretability.md",
                    "seconds": report["seconds"]}
        predictor = load_predictor(run.workspace, snapshot)
        report = interpret_round(run.workspace, run.index_dir, folder, objective=objective, roi=roi,
                                 snapshot=snapshot, predictor=predictor)
        reliance = metadata_reliance.for_round(run, snapshot, folder, predictor=predictor)
    except Exception as err:
        raise InterpretabilityError(f"the interpretability report of round {k} could not be made "
                                    f"({type(err).__name__}: {err}); the round's model and metrics are kept in "
                                    f"rounds/{k}/. Fix what this names and resume the run") from err
    return {"kind": kind, "measures": {name: m.get("value") for name, m in report["measures"].items()},
            "objective": objective, "objective_status": report["objective_status"],
            "ece": report["calibration"].get("ece"), "report": f"report/round-{k}/interpretability.md",
            "metadata_reliance": reliance, "seconds": report["seconds"]}


def met_by_construction(run: RunFolder, snapshot: Path, info: dict) -> str | None:
    """Why the objective's measure cannot fail for this round's model, when that is so: a model that blanks
    outside the confounder's region at inference cannot change its answer when that outside is blanked, and
    its attention cannot land on what is already blank."""
    objective = info.get("objective") or {}
    _, roi = objective_and_roi(run)
    config = json.loads((snapshot / "config.json").read_text()) if (snapshot / "config.json").exists() else {}
    if not roi or config.get("roi") != roi or objective.get("measure") not in ("counterfactual_flip_rate",
                                                                               "attribution_share"):
        return None
    return (f"This round's model blanks everything outside the {roi} region before it looks at an image, at "
            f"inference as well as in training; the {objective['measure'].replace('_', ' ')} measures what happens "
            f"when the outside of the {roi} is blanked or looked at, which this model can no longer do.")


def evaluate_round(run: RunFolder, k: int) -> dict:
    """Snapshot round k and write report/round-k/summary.json with the metric, figures and measures."""
    from medbuilder.progress import steps

    started = time.perf_counter()
    with steps(4, f"evaluating round {k}") as bar, inference_clock.measure() as inference:
        snapshot = snapshot_round(run, k)
        metrics = json.loads((snapshot / "metrics.json").read_text())
        predictions_file = snapshot / "predictions.json"
        predictions = json.loads(predictions_file.read_text()) if predictions_file.exists() else []
        folder = run.report_dir(k)
        summary = {"round": k, "metric": metrics["metric"], "value": metrics["value"], "ci95": metrics.get("ci95"),
                   "n_train": metrics.get("n_train"), "n_test": metrics.get("n_test"),
                   **{key: metrics.get(key) for key in ("unit", "n_units", "units_note", "one_per_unit")},
                   "extras": {key: metrics[key] for key in ("accuracy", "sensitivity", "specificity",
                                                            "balanced_accuracy") if key in metrics},
                   "strategies": (metrics.get("strategies") or {}).get("active", []),
                   "figures": _figures(metrics, predictions, folder)}
        if metrics.get("task") == "diagnosis":
            summary["operating_point"] = operating_point.summary_block(run, k)
        bar.update(1, what=f"evaluating round {k}: interpretability")
        kind = interpretation_kind(metrics, snapshot)
        if kind:
            summary["interpretability"] = interpret(run, k, snapshot, folder, kind)
            summary["by_construction"] = met_by_construction(run, snapshot, summary["interpretability"])
            summary["sections"] = interpretability_sections(run, summary)
        bar.update(2, what=f"evaluating round {k}: calibration and subgroups")
        if metrics.get("task") == "diagnosis" and metrics.get("positive_label"):
            calibration_and_subgroups(run, snapshot, folder, summary, metrics["positive_label"], kind)
        bar.update(3, what=f"evaluating round {k}: summary")
        summary["seconds"] = seconds_block(summary, time.perf_counter() - started, inference)
        run.write_summary(k, summary)
        bar.update(4, what=f"evaluating round {k}: done")
    return summary


def seconds_block(summary: dict, total: float, inference: inference_clock.Span) -> dict:
    """Where the evaluation's seconds went: all of it (before the summary is written), the model's forward
    passes within it, and the interpretability report (its own forwards included)."""
    report = (summary.get("interpretability") or {}).get("seconds")
    return {"evaluation": round(total, 2), "model_inference": round(inference.seconds, 2),
            "interpretability_report": report, "n_test": summary.get("n_test")}


def calibration_and_subgroups(run: RunFolder, snapshot: Path, folder: Path, summary: dict, positive: str,
                              kind: str | None) -> None:
    """A binary diagnosis round's subgroup metrics and (2D) calibration offer, added to the summary and its
    review sections."""
    summary["subgroups"] = subgroups.for_round(run, snapshot, positive)
    sections = summary.setdefault("sections", [])
    if kind == "classification":
        summary["calibration"] = temperature.for_round(run, snapshot, folder)
        text = temperature.section(summary["calibration"], (summary.get("interpretability") or {}).get("ece"))
        sections += [text] if text else []
    if summary["subgroups"]:
        sections.append("### Subgroups\n\n" + "\n".join(subgroups.markdown(summary["subgroups"], summary.get("unit"))))
