"""The model card's sections from medbuilder's reviewer checks of the delivered round: the acquisition
shortcut check and the model's reliance on it, calibration, subgroups and external validation."""

from __future__ import annotations

import json
from pathlib import Path

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.external import external_reports
from medbuilder.review.external_report import card_lines


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def check_sections(run_root: Path, round_k: int) -> list[str]:
    """Every section, in the order the card shows them."""
    return [*_audit_section(run_root, round_k), *_calibration_section(run_root, round_k),
            *_subgroup_section(run_root, round_k), *card_lines(external_reports(run_root))]


def _audit_section(run_root: Path, round_k: int) -> list[str]:
    """The acquisition-shortcut check of the training data (metadata_audit.json), as the gates showed it, and
    the delivered round's own reliance on those properties."""
    from medbuilder.review.metadata_audit import acquisition_confounders
    from medbuilder.review.metadata_reliance import summary_line

    audit = _read_json(run_root / "metadata_audit.json")
    if not audit:
        return []
    if audit.get("auroc") is None:
        return ["## Acquisition shortcut check", "", f"Not measured: {audit.get('note', 'no result')}.", ""]
    top = ", ".join(t["feature"] for t in audit.get("top_features", [])[:3])
    reliance = _read_json(run_root / "report" / f"round-{round_k}" / "metadata_reliance.json") or {}
    named = acquisition_confounders(_read_json(run_root / "datacard.json"))
    lines = ["## Acquisition shortcut check", "", audit.get("summary", ""), "", f"Leading features: {top}."
             + (f" The datacard's {', '.join(repr(n) for n in named)} is measured by this check." if named else "")]
    lines += ["", summary_line(reliance) or "The delivered model's own reliance on these properties was not "
              "measured (binary classifiers of 2D images only).", ""]
    return lines


def _summary(run_root: Path, round_k: int) -> dict:
    summary = RunFolder(run_root).summary(round_k)
    return summary.model_dump(exclude_unset=True) if summary else {}


def _calibration_section(run_root: Path, round_k: int) -> list[str]:
    """Whether the delivered probabilities are temperature-scaled, and the test figures before and after."""
    summary = _summary(run_root, round_k)
    fitted = summary.get("calibration")
    if not fitted:
        return []
    if fitted.get("temperature") is None:
        ece = (summary.get("interpretability") or {}).get("ece")
        shown = "n/a" if ece is None else f"{ece:.3f}"
        return ["## Calibration", "", f"Test ECE {shown} (10 bins). No temperature was fitted: {fitted['reason']}.",
                ""]
    applied = _read_json(run_root / "calibration.json")
    applied = applied if applied and applied.get("round") == round_k else None
    before, after = fitted["test"]["before"], fitted["test"]["after"]
    how = (f"Delivered with temperature scaling (T = {fitted['temperature']:.3f}, asked for by {applied.get('who')})"
           if applied else f"Delivered as trained: a temperature (T = {fitted['temperature']:.3f}) was fitted but "
                           "not asked for")
    return ["## Calibration", "",
            f"{how}. T was fitted on the validation split ({fitted['n_validation']} images held out of training, "
            f"never the test split). Test ECE {before['ece']:.3f} as trained, {after['ece']:.3f} with T; log loss "
            f"{before['log_loss']:.3f} and {after['log_loss']:.3f}. Calls at the operating point are the same "
            "either way.", ""]


def _subgroup_section(run_root: Path, round_k: int) -> list[str]:
    """Metrics per site, scanner, sex, age band or group of the test split, when the index carries them."""
    from medbuilder.review.subgroups import markdown

    summary = _summary(run_root, round_k)
    if "subgroups" not in summary:
        return []
    return ["## Subgroups", "", *markdown(summary["subgroups"], summary.get("unit")), ""]
