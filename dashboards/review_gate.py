"""The review gate on the Approvals page: figures, saliency, a case viewer, the operating point, how the
feedback is read, and the answer's fields.

Widgets that must answer at once (the threshold slider, the case viewer, "read my feedback") sit outside
the page's form; the form's fields pick their values up from st.session_state when the answer is sent.
"""

from __future__ import annotations

import io
import json
import re

import streamlit as st

from medbuilder.dashboards import data, ui
from medbuilder.protocol.run_folder import RunFolder

CATEGORY_NAMES = {"true-positive": "found (true positives)", "false-positive": "false alarms (false positives)",
                  "false-negative": "missed (false negatives)", "correct": "correct", "wrong": "wrong"}
FIGURE_NAMES = {"roc": "ROC curve: sensitivity against 1 - specificity over all thresholds",
                "confusion": "Confusion matrix: truth (rows) against the model's answer (columns)",
                "reliability": "Reliability: stated probability against how often the disease is there; on the "
                               "diagonal = well calibrated",
                "dice": "Dice per test case"}
SALIENCY_NOTE = ("Each row is one test case: the image as the model sees it, GradCAM (where the evidence for the "
                 "answer lies, at the network's last layer) and occlusion (how much hiding each patch changes the "
                 "answer). Colour scale: dark blue = no importance, red = the most important part of that image.")
STRATEGY_CHOICES = ("roi", "counterfactual_aug", "mask_confounder", "group_balanced")


def gate_key(folder: RunFolder, k: int) -> str:
    return f"{folder.run_id}-review-{k}"


def evidence(folder: RunFolder, k: int) -> None:
    key = gate_key(folder, k)
    _figures(folder, k)
    _saliency(folder, k)
    case_viewer(folder, k, key)
    operating_point(folder, k, key)
    feedback_reading(folder, k, key)


def _figures(folder: RunFolder, k: int) -> None:
    images = data.round_figures(folder, k)["figures"]
    if images:
        cols = st.columns(len(images))
        for col, image in zip(cols, images):
            col.image(str(image), caption=FIGURE_NAMES.get(image.stem, image.stem))


def _saliency(folder: RunFolder, k: int) -> None:
    grids = data.round_figures(folder, k)["saliency"]
    if not grids:
        return
    st.markdown("#### Saliency: where the model looked")
    st.caption(SALIENCY_NOTE)
    order = {"false-negative": 0, "false-positive": 1, "true-positive": 2}
    for grid in sorted(grids, key=lambda p: order.get(p.stem.removeprefix("saliency-"), 3)):
        name = grid.stem.removeprefix("saliency-")
        st.markdown(f"**{CATEGORY_NAMES.get(name, name)}**, most confident first")
        st.image(str(grid), width="stretch")


# ----------------------------------------------------------------------------- case viewer


def case_viewer(folder: RunFolder, k: int, key: str) -> None:
    """Any found, missed or falsely flagged test case, full size, with window/level and a saliency overlay."""
    cases = review_cases(folder, k)
    if not cases:
        return
    st.markdown("#### Case viewer")
    categories = [c for c in CATEGORY_NAMES if any(case["category"] == c for case in cases)]
    category = st.radio("Cases", categories, horizontal=True, key=f"viewer-category-{key}",
                        format_func=lambda c: f"{CATEGORY_NAMES[c]} ({sum(x['category'] == c for x in cases)})")
    shown = [case for case in cases if case["category"] == category]
    case = st.selectbox("Case", shown, key=f"viewer-case-{key}-{category}", format_func=_case_label)
    cols = st.columns(3)
    level = cols[0].slider("Level (window centre)", 0.0, 1.0, 0.5, 0.01, key=f"viewer-level-{key}")
    width = cols[1].slider("Window width", 0.05, 1.0, 1.0, 0.05, key=f"viewer-width-{key}")
    opacity = cols[2].slider("Saliency opacity", 0.0, 1.0, 0.45, 0.05, key=f"viewer-opacity-{key}")
    arrays = case_arrays(folder, k, case["id"])
    if arrays is None:
        st.warning(f"The arrays of case {case['name']} are missing from the round's report.")
        return
    st.image(viewer_png(arrays["image"], arrays["gradcam"], level, width, opacity, _case_label(case)),
             width="stretch")


def review_cases(folder: RunFolder, k: int) -> list[dict]:
    """The case viewer's index (written by medbuilder's interpretability report, not by the agents)."""
    file = folder.report_dir(k) / "cases" / "index.json"
    try:
        cases = json.loads(file.read_text())
    except (OSError, ValueError):
        return []
    return [c for c in cases if isinstance(c, dict) and re.fullmatch(r"[a-z-]+-\d{3}", str(c.get("id", "")))]


def case_arrays(folder: RunFolder, k: int, case_id: str) -> dict | None:
    import numpy as np

    file = folder.report_dir(k) / "cases" / f"{case_id}.npz"
    try:
        with np.load(file, allow_pickle=False) as arrays:
            return {"image": arrays["image"], "gradcam": arrays["gradcam"]}
    except (OSError, KeyError, ValueError):
        return None


def _case_label(case: dict) -> str:
    score = f", probability {case['score']:.2f}" if isinstance(case.get("score"), (int, float)) else ""
    return f"{case['name']}: truth {case['label']}, model {case['prediction']}{score}"


def viewer_png(image, cam, level: float, width: float, opacity: float, title: str) -> bytes:
    """The case at full size: windowed grey image, GradCAM over it at `opacity`, and the colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = level - width / 2, level + width / 2
    fig, ax = plt.subplots(figsize=(7, 6.2))
    ax.imshow(image.astype(float), cmap="gray", vmin=low, vmax=high)
    overlay = ax.imshow(cam.astype(float), cmap="jet", alpha=opacity, vmin=0, vmax=1)
    bar = fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("GradCAM: 0 = no importance, 1 = the most important part of this image")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- operating point


def operating_point(folder: RunFolder, k: int, key: str) -> None:
    """A threshold slider, or a target sensitivity / specificity, and the test counts it gives."""
    from medbuilder.review import operating_point as op

    try:
        labels, scores, positive = op.round_scores(folder, k)
    except (ValueError, FileNotFoundError) as err:
        st.caption(f"The operating point cannot be explored: {err}")
        return
    if not labels:
        return
    st.markdown("#### Operating point")
    st.caption(f"A case is called {positive} when its probability is at least the threshold. Lower it to miss "
               "fewer cases at the cost of more false alarms. The counts are on the test cases that also choose "
               "the threshold, so they are optimistic.")
    mode = st.radio("Choose it by", ["threshold", "target sensitivity", "target specificity"], horizontal=True,
                    key=f"op-mode-{key}")
    if mode == "threshold":
        threshold = st.slider("Threshold", 0.0, 1.0, op.DEFAULT_THRESHOLD, 0.01, key=f"op-threshold-{key}")
    else:
        target = mode.split()[1]
        value = st.slider(f"Target {target}", 0.5, 1.0, 0.95, 0.01, key=f"op-target-{key}")
        threshold = op.threshold_for(labels, scores, target, value)
    point = op.at_threshold(labels, scores, threshold)
    cols = st.columns(5)
    cols[0].metric("Threshold", f"{threshold:.3f}")
    cols[1].metric("Sensitivity", _rate(point["sensitivity"]))
    cols[2].metric("Specificity", _rate(point["specificity"]))
    cols[3].metric("Missed", f"{point['missed']} of {point['tp'] + point['fn']}")
    cols[4].metric("False alarms", f"{point['false_alarms']} of {point['tn'] + point['fp']}")


def _rate(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def chosen_operating_point(key: str) -> dict:
    """The answer's operating point fields from the explorer above the form."""
    mode = st.session_state.get(f"op-mode-{key}")
    if mode in ("target sensitivity", "target specificity"):
        return {"target": mode.split()[1], "target_value": st.session_state.get(f"op-target-{key}")}
    threshold = st.session_state.get(f"op-threshold-{key}")
    return {"threshold": threshold} if threshold is not None and abs(threshold - 0.5) > 1e-9 else {}


# ----------------------------------------------------------------------------- feedback


def feedback_reading(folder: RunFolder, k: int, key: str) -> None:
    """The refine feedback, how medbuilder reads it, and the fields to correct that reading."""
    st.markdown("#### Feedback for another round (for refine)")
    st.text_area("Feedback in plain words", key=f"feedback-{key}",
                 placeholder="e.g. it must look at the brain, not at text on the image; train longer")
    if st.button("Read my feedback", key=f"read-{key}"):
        st.session_state[f"reading-for-{key}"] = st.session_state.get(f"feedback-{key}", "")
    words = st.session_state.get(f"reading-for-{key}")
    if words is None:
        return
    reading = read_with_corrections(folder, k, key, words)
    if reading is not None:
        show_reading(reading)
        _correction_widgets(reading, key)


def read_with_corrections(folder: RunFolder, k: int, key: str, words: str) -> dict | None:
    from medbuilder.review.refine import read_feedback

    try:
        return read_feedback(folder, k + 1, words, corrections(key))
    except ValueError as err:
        st.error(f"The correction does not fit: {err}")
        return None


def reading_of(folder: RunFolder, gate: str, values: dict) -> dict | None:
    """How a refine answer's words are read (before the flow writes its own record of it)."""
    from medbuilder.review.refine import read_feedback

    k = int(gate.split("-", 1)[1])
    try:
        return read_feedback(folder, k + 1, values.get("feedback") or "", values)
    except (ValueError, OSError):
        return None


def written_reading(folder: RunFolder, gate: str) -> dict | None:
    """The reading the flow recorded for the round this refine answer started (refinements/round-<k+1>.json)."""
    k = int(gate.split("-", 1)[1])
    file = folder.root / "refinements" / f"round-{k + 1}.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def show_reading(reading: dict | None) -> None:
    if not reading:
        return
    objective = reading.get("objective")
    lines = ["**How your words were read**"]
    if objective:
        lines += [f"- confounder: **{objective['confounder']}**",
                  f"- measure: **{objective['measure'].replace('_', ' ')}**, at most **{objective['max_reliance']:.2f}**",
                  f"- the metric, sensitivity and specificity may fall at most **{objective['max_metric_drop']:.2f}** "
                  "below round 0"]
    else:
        lines.append("- no confounder named: the round changes only training settings")
    lines += [f"- strategies: {'; '.join(reading['strategies']) or 'none'}",
              f"- settings changed: {json.dumps(reading['config']) if reading['config'] else 'none'}",
              f"- in short: {reading['summary']}"]
    st.info("\n".join(lines))


def _correction_widgets(reading: dict, key: str) -> None:
    from medbuilder.lifecycle.gate_forms import MEASURES

    with st.expander("Correct this reading", expanded=False):
        st.selectbox("Confounder", ["(as read)", *reading["confounders"]], key=f"fix-confounder-{key}")
        st.selectbox("Measure", ["(as read)", *MEASURES], key=f"fix-measure-{key}")
        st.multiselect("Strategies (empty: medbuilder's choice)", STRATEGY_CHOICES, key=f"fix-strategies-{key}")


def corrections(key: str) -> dict:
    state = st.session_state
    confounder, measure = state.get(f"fix-confounder-{key}"), state.get(f"fix-measure-{key}")
    return {"confounder": None if confounder in (None, "(as read)") else confounder,
            "measure": None if measure in (None, "(as read)") else measure,
            "strategies": list(state.get(f"fix-strategies-{key}") or []) or None,
            "max_reliance": state.get(f"reliance-{key}"), "max_metric_drop": state.get(f"drop-{key}")}


# ----------------------------------------------------------------------------- the form


def data_json(folder: RunFolder, gate: str, name: str) -> dict | None:
    """A file of the gate's round report (review-<k>: report/round-<k>/<name>)."""
    path = folder.report_dir(int(gate.split("-", 1)[1])) / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def form_fields(folder: RunFolder, gate: str, key: str) -> dict:
    """The review answer's widgets (inside the page's form) and the values set above it."""
    action = st.radio("Your decision", ["approve", "refine", "reject"], horizontal=True, key=f"action-{key}",
                      help="approve: deliver at the operating point above; refine: train another round with the "
                           "feedback above; reject: stop.")
    cols = st.columns(2)
    max_reliance = cols[0].number_input(
        "Max reliance (optional)", min_value=0.0, max_value=1.0, value=None, step=0.05, key=f"reliance-{key}",
        help="The most reliance on the confounder you accept, on the measure's 0-1 scale.")
    max_drop = cols[1].number_input(
        "Max metric drop (optional)", min_value=0.0, max_value=1.0, value=None, step=0.01, key=f"drop-{key}",
        help="How far AUROC, sensitivity and specificity may fall below round 0 for less reliance.")
    reason = st.text_input("Reason (for reject)", key=f"reason-{key}")
    values = {"action": action, "max_reliance": max_reliance, "max_metric_drop": max_drop, "reason": reason}
    if action == "approve":
        values.update(chosen_operating_point(key))
        calibration = data_json(folder, gate, "calibration.json")
        if calibration:
            values["calibrate"] = st.checkbox(
                f"Calibrate: deliver with temperature {calibration['temperature']:.3f} (test ECE "
                f"{calibration['test']['before']['ece']:.3f} -> {calibration['test']['after']['ece']:.3f})",
                value=bool(calibration.get("offered")), key=f"calibrate-{key}",
                help="Fitted on the validation split, never the test split; the same calls at the same operating "
                     "point, probabilities closer to the observed rates.")
    if action == "refine":
        fixes = {k: v for k, v in corrections(key).items() if k in ("confounder", "measure", "strategies") and v}
        values.update({"feedback": st.session_state.get(f"feedback-{key}", ""), **fixes})
    return values
