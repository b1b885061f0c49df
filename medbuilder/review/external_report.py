"""The external-validation report (external_validation.md) and its lines in the model card."""

from __future__ import annotations

import math



def held_out_note(r: dict) -> str:
    if not r.get("held_out_from"):
        return ""
    return (f"This set was held out from the source of {r['held_out_from']}: it shows how the model does on scans "
            "it never saw, not on another hospital, scanner or population.")


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(ci) -> str:
    return f"{_num(ci[0])} to {_num(ci[1])}" if ci and None not in ci else "no interval"


def headline(r: dict) -> str:
    """'AUROC 0.912 (95% CI 0.850 to 0.960) on br35h-heldout: 300 images from 40 independent duplicate groups'."""
    return (f"{(r.get('metric') or 'auroc').upper()} {_num(r.get('value'))} (95% CI {_ci(r.get('ci95'))}) on "
            f"{r['dataset']}: {r.get('units_note') or str(r.get('n')) + ' images'}")


def comparison_rows(r: dict) -> list[list[str]]:
    internal = r.get("internal") or {}
    rows = [["internal test split", _num(internal.get("value")), _ci(internal.get("ci95")),
             internal.get("units_note") or f"{internal.get('n_test')} images"],
            [f"external: {r['dataset']}", _num(r.get("value")), _ci(r.get("ci95")), r.get("units_note", "")]]
    one = r.get("one_per_unit") or {}
    if one.get("n") and one.get("n") != r.get("n"):
        rows.append([f"external, one image per {r.get('unit')}", _num(one.get("value")), "", f"{one['n']} images"])
    return rows


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]


def _rates(r: dict) -> list[str]:
    lines = [f"- accuracy {_num(r.get('accuracy'))} (95% CI {_ci(r.get('accuracy_ci95'))}), sensitivity "
             f"{_num(r.get('sensitivity'))} ({_ci(r.get('sensitivity_ci95'))}), specificity "
             f"{_num(r.get('specificity'))} ({_ci(r.get('specificity_ci95'))}), the class with the highest "
             "probability called"]
    point = r.get("operating_point")
    if point:
        lines.append(f"- at the delivered operating point (called {r.get('positive_label')} at probability "
                     f"{_num(point['threshold'], 2)} or more): sensitivity {_num(point['sensitivity'])} "
                     f"({_ci(point.get('sensitivity_ci95'))}; {point['fn']} missed), specificity "
                     f"{_num(point['specificity'])} ({_ci(point.get('specificity_ci95'))}; {point['fp']} false alarms)")
    return lines


def _measures(r: dict) -> list[str]:
    from medbuilder.review.shortcuts import DEFINITIONS

    info = r.get("interpretability") or {}
    measures, reasons = info.get("measures") or {}, info.get("measure_reasons") or {}
    rows = [[name, _num(value), reasons.get(name, "") if value is None else "", DEFINITIONS.get(name, "")]
            for name, value in measures.items()]
    return _table(["measure", "value", "why not measured", "definition"], rows) if rows else ["Not measured."]


def render_report(r: dict) -> str:
    kind = "generated" if r.get("provenance") == "generated" else "real"
    lines = [f"# External validation on {r['dataset']}", "",
             f"Run `{r['run_id']}`, delivered round {r['round']}; {r['title']} ({kind} images). "
             + held_out_note(r), "",
             f"**{headline(r)}**", "", *_table(["test set", "AUROC", "95% CI", "over"], comparison_rows(r)), "",
             *_rates(r), "",
             f"Cases: {r['n']} of {r['n_indexed']} indexed images ("
             + ", ".join(f"{name}: {n}" for name, n in r["per_class"].items()) + "). Labels read as "
             + ", ".join(f"{k} = {v}" for k, v in r["label_map"].items()) + ". How the files were read: "
             + "; ".join(r["layout"]) + ".", ""]
    if r["set_aside"]:
        lines += [f"Set aside: {len(r['set_aside'])} image(s), e.g. {r['set_aside'][0]['image']} "
                  f"({r['set_aside'][0]['why']}).", ""]
    if r.get("subgroups") is not None:
        from medbuilder.review.subgroups import markdown

        lines += ["## Subgroups", "", *markdown(r["subgroups"], r.get("unit")), ""]
    info = r.get("interpretability") or {}
    lines += ["## Calibration", "", f"Expected calibration error on these cases: {_num(info.get('calibration_ece'))} "
              "(10 bins; 0 is perfect).", "", "## Shortcut measures on these cases", "", *_measures(r), "",
              f"Saliency, reliability diagram and case images: {info.get('report', 'report/interpretability.md')}.",
              "", f"_Computed by medbuilder in {r.get('seconds')} s; the figures are medbuilder's, from the "
              "delivered bundle's predictions._", ""]
    return "\n".join(lines)


def card_lines(reports: list[dict]) -> list[str]:
    """The model card's 'External validation' section."""
    lines = ["## External validation", ""]
    if not reports:
        return lines + ["None yet: `medbuilder evaluate RUN --dataset NAME` validates this model on another "
                        "datacard's images.", ""]
    for r in reports:
        lines += [f"- {headline(r)}; internal test {_num((r.get('internal') or {}).get('value'))}. Calibration "
                  f"error {_num((r.get('interpretability') or {}).get('calibration_ece'))}. "
                  + held_out_note(r)
                  + f" Report: external/{r['dataset']}/external_validation.md."]
    return lines + [""]
