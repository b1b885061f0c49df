"""What the review gate and the model card say about a round: figures in plain words, the metric guard,
the objective, and a before/after table of every round.

Each round's ``report/round-<k>/summary.json`` holds its metric, its operating point (threshold, missed
cases, false alarms), calibration, the active refinement strategies and the shortcut measures. These
functions turn them into markdown a clinician can read without the docs: every figure with one line on
what it means and what counts as good, no file paths, no command syntax.
"""

from __future__ import annotations

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.shortcuts import MEASURES

SHORT = {"counterfactual_flip_rate": "flip rate", "attribution_share": "attribution share",
         "subgroup_gap": "subgroup gap", "confounded_fpr": "confounded FPR"}
MEANING = {
    "counterfactual_flip_rate": "share of test cases whose answer changes when the confounder is removed or added "
                                "(for a region: when everything outside it is blanked). 0 = the confounder never "
                                "changes an answer; lower is better; near 1 = the model decides by the confounder.",
    "attribution_share": "share of the model's attention (GradCAM) that falls on the confounder (for a region: "
                         "outside it). Lower is better; compare with the share of the image the confounder covers, "
                         "which is what attention spread evenly would give.",
    "subgroup_gap": "AUROC on cases that show the confounder minus AUROC on cases without it. Near 0 is good; a "
                    "large gap either way means the confounder changes how well the model works.",
    "confounded_fpr": "false alarms among the negative cases that show the confounder. Lower is better; well above "
                      "the rate on clean negatives means the confounder alone raises alarms.",
}
FIGURE_MEANING = {
    "auroc": "how well the score ranks diseased above healthy cases over all thresholds: 0.5 is chance, 1.0 is "
             "perfect; the interval shows the uncertainty of this test size.",
    "sensitivity": "share of the diseased cases the model calls positive; higher is better; each miss is a "
                   "diseased patient told the image looks normal.",
    "specificity": "share of the healthy cases the model calls negative; higher is better; each failure is a "
                   "false alarm that costs a second look.",
    "ece": "calibration error: how far the stated probabilities are from how often the disease is really there "
           "(0 = a stated 80% is right 80% of the time); below 0.05 is good, above 0.10 poor.",
}
GUARDED = ("value", "sensitivity", "specificity")  # the metric and the operating point's rates
DEFAULT_DROP = 0.02


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci) -> str:
    return f" (95% CI {ci[0]:.3f} to {ci[1]:.3f})" if ci and None not in ci else ""


def earlier_summaries(run: RunFolder, k: int) -> list[dict]:
    return [s.model_dump(exclude_unset=True) for s in (run.summary(j) for j in range(k)) if s is not None]


# ----------------------------------------------------------------------------- the metric guard


def guarded_figures(summary: dict) -> dict[str, float | None]:
    """The task metric and, for a binary model, sensitivity and specificity at its operating point."""
    point = summary.get("operating_point") or {}
    return {"value": summary.get("value"), "sensitivity": point.get("sensitivity"),
            "specificity": point.get("specificity")}


def metric_drops(summary: dict, baseline: dict | None, max_drop: float) -> list[dict]:
    """Each guarded figure that fell more than `max_drop` below round 0 (empty for round 0 itself)."""
    if not baseline or baseline.get("round") == summary.get("round"):
        return []
    now, before = guarded_figures(summary), guarded_figures(baseline)
    drops = []
    for name in GUARDED:
        if now[name] is not None and before[name] is not None and before[name] - now[name] > max_drop + 1e-9:
            label = summary["metric"].upper() if name == "value" else name
            drops.append({"figure": label, "before": before[name], "after": now[name],
                          "drop": before[name] - now[name]})
    return drops


def max_drop_of(summary: dict) -> float:
    objective = (summary.get("interpretability") or {}).get("objective") or {}
    return float(objective.get("max_metric_drop", DEFAULT_DROP))


def objective_met(summary: dict, baseline: dict | None) -> bool | None:
    """True when the objective's measure is within its limit and no guarded figure (metric, sensitivity,
    specificity) fell more than max_metric_drop below round 0; None when there is no objective (or it
    cannot be measured)."""
    info = summary.get("interpretability") or {}
    status, objective = info.get("objective_status"), info.get("objective")
    if not objective or not status or status["status"] not in ("met", "not met"):
        return None
    return status["status"] == "met" and not metric_drops(summary, baseline, max_drop_of(summary))


# ----------------------------------------------------------------------------- review text


def headline(summary: dict) -> list[str]:
    """The test figures, each with its plain meaning."""
    name = summary["metric"].upper()
    cases = summary.get("units_note") or f"{summary.get('n_test')} test cases"
    lines = [f"On **{cases}** the model never saw ({summary.get('n_train')} cases were used for training; "
             "each interval resamples whole units, so copies of one scan count once):", "",
             f"- **{name} {summary['value']:.3f}**{_ci(summary.get('ci95'))}: "
             + FIGURE_MEANING.get(summary["metric"], "the task's metric.")]
    point = summary.get("operating_point")
    if point:
        positives, negatives = point["tp"] + point["fn"], point["tn"] + point["fp"]
        lines += [f"- At the operating point (a case is called *{point['positive_label']}* when its probability "
                  f"is at least {point['threshold']:.2f}, {point['how']}):",
                  f"  - **sensitivity {_fmt(point['sensitivity'])}**{_ci(point.get('sensitivity_ci95'))}: "
                  f"**{point['missed']} missed** of {positives}. " + FIGURE_MEANING["sensitivity"],
                  f"  - **specificity {_fmt(point['specificity'])}**{_ci(point.get('specificity_ci95'))}: "
                  f"**{point['false_alarms']} false alarms** among {negatives}. " + FIGURE_MEANING["specificity"]]
        if point.get("chosen_on") == "test":
            lines.append("  - This threshold was chosen on these test cases, so the counts at it are optimistic: "
                         "confirm them on new cases.")
    ece = (summary.get("interpretability") or {}).get("ece")
    if ece is not None:
        lines.append(f"- **Calibration error {ece:.3f}**: " + FIGURE_MEANING["ece"])
    return lines


def measures_table(info: dict) -> list[str]:
    rows = [f"| {SHORT[name]} | {_fmt(info['measures'].get(name))} | {MEANING[name]} |" for name in MEASURES]
    return ["### How much the model relies on the confounder (test cases)", "",
            "| measure | value | what it means, and what is good |", "| --- | --- | --- |", *rows,
            "", "A dash means the test data lack what that measure needs (e.g. no images with the confounder "
                "marked)."]


def objective_text(info: dict, drops: list[dict], by_construction: str | None) -> list[str]:
    objective, status = info.get("objective"), info.get("objective_status")
    if not objective:
        return ["No objective about a confounder was stated; the measures are shown for information."]
    lines = ["### Your objective", "",
             f"You asked: \u201c{objective['words']}\u201d. medbuilder reads this as: reliance on "
             f"**{objective['confounder']}**, measured by the {SHORT[objective['measure']]}, must be at most "
             f"**{objective['max_reliance']:.2f}** (*max reliance*: the most reliance you accept, on the measure's "
             f"0-1 scale), and the {', '.join(('AUROC', 'sensitivity', 'specificity'))} may each fall at most "
             f"**{objective.get('max_metric_drop', DEFAULT_DROP):.2f}** below round 0 (*max metric drop*: how much "
             "accuracy you will trade for less reliance). You can change both numbers when you answer."]
    if not status or status["status"] not in ("met", "not met"):
        reason = (status or {}).get("reason") or "not measured"
        return lines + ["", f"**Not measurable**: {reason}."]
    verdict = "within" if status["status"] == "met" else "above"
    lines += ["", f"- {SHORT[objective['measure']]} = {_fmt(status.get('value'))}: **{verdict}** the limit."]
    lines += [f"- **{d['figure']} fell from {d['before']:.3f} to {d['after']:.3f}** ({d['drop']:.3f}, more than "
              f"the {objective.get('max_metric_drop', DEFAULT_DROP):.2f} allowed)." for d in drops]
    met = status["status"] == "met" and not drops
    lines.append(f"- Objective: **{'met' if met else 'not met'}**.")
    if by_construction and status["status"] == "met":
        lines += ["", f"**Met by construction.** {by_construction} So this figure shows the design, not something "
                      "the model learned; judge the round by the test figures against round 0 and by the saliency "
                      "of the missed cases."]
    return lines


def rounds_table(summaries: list[dict]) -> str:
    """Before/after: one row per round with its changes, the metric, the operating point, calibration,
    the shortcut measures and the objective."""
    header = ["round", "changes", "AUROC", "sensitivity", "specificity", "missed", "false alarms",
              "calibration error", *[SHORT[m] for m in MEASURES], "objective"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for s in summaries:
        info = s.get("interpretability") or {}
        measures = info.get("measures") or {}
        point = s.get("operating_point") or {}
        status = (info.get("objective_status") or {}).get("status", "-")
        cells = [str(s["round"]), "; ".join(s.get("strategies") or []) or "none",
                 _fmt(s["value"]) if s["metric"] == "auroc" else f"{s['metric']} {_fmt(s['value'])}",
                 _fmt(point.get("sensitivity")), _fmt(point.get("specificity")),
                 str(point.get("missed", "-")), str(point.get("false_alarms", "-")), _fmt(info.get("ece")),
                 *[_fmt(measures.get(m)) for m in MEASURES], status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def segmentation_section(info: dict) -> str:
    rows = [f"| {c['file']} | {'-' if c['saliency outside the structure'] is None else c['saliency outside the structure']} |"
            for c in info["cases"]]
    return "\n".join(["### Occlusion saliency (test images)", "",
                      "Share of the occlusion saliency that falls outside the segmented structure: lower is better "
                      "(the model looks at the structure, not at its surroundings).", "",
                      "| image | saliency outside the structure |", "| --- | --- |", *rows])


def interpretability_sections(run: RunFolder, summary: dict) -> list[str]:
    """The review's sections after the headline: measures, objective, before/after."""
    info = summary.get("interpretability") or {}
    if info.get("kind") == "segmentation":
        return [segmentation_section(info)]
    earlier = earlier_summaries(run, summary["round"])
    drops = metric_drops(summary, earlier[0] if earlier else None, max_drop_of(summary))
    sections = ["\n".join(measures_table(info)),
                "\n".join(objective_text(info, drops, summary.get("by_construction")))]
    if summary["round"] > 0:
        sections.append("### Before and after\n\n" + rounds_table([*earlier, summary]))
    return sections


def card_sections(run: RunFolder, k: int) -> dict[str, str]:
    """The model card's section on shortcuts: the delivered round's measures and every round's table."""
    summaries = earlier_summaries(run, k + 1)
    if not summaries or "interpretability" not in summaries[-1]:
        return {}
    info = summaries[-1]["interpretability"]
    if info.get("kind") == "segmentation":
        return {"Interpretability": segmentation_section(info)}
    drops = metric_drops(summaries[-1], summaries[0], max_drop_of(summaries[-1]))
    body = [f"Measured on round {k}, the delivered model (definitions: docs/shortcut_measures.md).", "",
            *measures_table(info), "", *objective_text(info, drops, summaries[-1].get("by_construction"))]
    if len(summaries) > 1:
        body += ["", "### Every round (round 0: no refinement)", "", rounds_table(summaries)]
    return {"Interpretability and shortcut measures": "\n".join(body)}
