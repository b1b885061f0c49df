"""What the review gate and the model card show about shortcuts: measures, objective, rounds.

Each round's ``report/round-<k>/summary.json`` holds its metric, the active
refinement strategies and the shortcut measures; these functions turn them into
markdown: this round's measures and objective status, and a before/after table
of every round so far.
"""

from __future__ import annotations

from medbuilder.protocol.artifacts import RunFolder
from medbuilder.review.shortcuts import MEASURES

SHORT = {"counterfactual_flip_rate": "flip rate", "attribution_share": "attribution share",
         "subgroup_gap": "subgroup gap", "confounded_fpr": "confounded FPR"}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def earlier_summaries(run: RunFolder, k: int) -> list[dict]:
    return [run.read_json(f"report/round-{j}/summary.json") for j in range(k)
            if run.exists(f"report/round-{j}/summary.json")]


def objective_line(status: dict | None, objective: dict | None) -> str:
    if not objective:
        return "No objective about a confounder was stated; the measures are shown for information."
    if not status:
        return f"Objective: {objective['measure']} at most {objective['max_reliance']:.2f}: not measured."
    verdict = {"met": "**met**", "not met": "**not met**"}.get(status["status"], f"**{status['status']}**")
    reason = f" ({status['reason']})" if status.get("reason") else ""
    return (f"Objective ({objective['confounder']}; \"{objective['words']}\"): {status['measure']} = "
            f"{_fmt(status.get('value'))}, at most {objective['max_reliance']:.2f}: {verdict}{reason}. "
            f"The test metric may fall at most {objective.get('max_metric_drop', 0.02):.2f} below round 0.")


def segmentation_section(info: dict) -> str:
    rows = [f"| {c['file']} | {'-' if c['saliency outside the structure'] is None else c['saliency outside the structure']} |"
            for c in info["cases"]]
    return "\n".join(["### Occlusion saliency (test images)", "", "| image | saliency outside the structure |",
                      "| --- | --- |", *rows, "", f"Maps: `{info['report']}`."])


def measures_section(summary: dict) -> str:
    info = summary.get("interpretability") or {}
    if "error" in info:
        return f"### Interpretability\n\nThe interpretability report failed: {info['error']}"
    if info.get("kind") == "segmentation":
        return segmentation_section(info)
    rows = [f"| {SHORT[name]} | {_fmt(info['measures'].get(name))} |" for name in MEASURES]
    return "\n".join(["### Shortcut measures (test split; docs/shortcut_measures.md)", "",
                      "| measure | value |", "| --- | --- |", *rows, "",
                      f"Calibration: ECE {_fmt(info.get('ece'))}. Saliency maps, reliability curve and subgroups: "
                      f"`{info['report']}`.", "", objective_line(info.get("objective_status"), info.get("objective"))])


def rounds_table(summaries: list[dict]) -> str:
    """Before/after: one row per round with its strategies, metric and measures."""
    header = ["round", "strategies", "metric", *[SHORT[m] for m in MEASURES], "objective"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for s in summaries:
        info = s.get("interpretability") or {}
        measures = info.get("measures") or {}
        status = (info.get("objective_status") or {}).get("status", "-")
        lines.append("| " + " | ".join([str(s["round"]), ", ".join(s.get("strategies") or []) or "none",
                                        f"{s['metric']} {_fmt(s['value'])}",
                                        *[_fmt(measures.get(m)) for m in MEASURES], status]) + " |")
    return "\n".join(lines)


def interpretability_sections(run: RunFolder, summary: dict) -> list[str]:
    sections = [measures_section(summary)]
    if summary["round"] > 0 and "measures" in summary["interpretability"]:
        sections.append("### Before and after\n\n" + rounds_table([*earlier_summaries(run, summary["round"]), summary]))
    return sections


def objective_met(summary: dict, baseline: dict | None) -> bool | None:
    """True when the objective's measure is within its limit and the metric within its drop of round 0;
    None when there is no objective (or it cannot be measured)."""
    info = summary.get("interpretability") or {}
    status, objective = info.get("objective_status"), info.get("objective")
    if not objective or not status or status["status"] not in ("met", "not met"):
        return None
    floor = (baseline or summary)["value"] - float(objective.get("max_metric_drop", 0.02))
    return status["status"] == "met" and summary["value"] >= floor


def card_sections(run: RunFolder, k: int) -> dict[str, str]:
    """The model card's section on shortcuts: the delivered round's measures and every round's table."""
    summaries = earlier_summaries(run, k + 1)
    if not summaries or "interpretability" not in summaries[-1]:
        return {}
    if "measures" not in summaries[-1]["interpretability"]:
        return {"Interpretability": measures_section(summaries[-1])}
    body = [f"Measured on round {k}, the delivered model.", "", measures_section(summaries[-1])]
    if len(summaries) > 1:
        body += ["", "### Every round (round 0: no refinement)", "", rounds_table(summaries)]
    return {"Interpretability and shortcut measures": "\n".join(body)}
