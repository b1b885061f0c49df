"""The review gate's evidence and form on the Approvals page: figures, saliency, the answer's fields."""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import data, ui


def evidence(folder, k: int) -> None:
    images = data.round_figures(folder, k)
    if images["figures"]:
        ui.image_grid(images["figures"], len(images["figures"]))
    if images["saliency"]:
        with st.expander(f"Saliency maps ({len(images['saliency'])})", expanded=False):
            ui.image_grid(images["saliency"], 3)


def form_fields(folder, gate: str, key: str) -> dict:
    """The review answer's widgets (inside the page's form); returns their values."""
    action = st.radio("Action", ["approve", "refine", "reject"], horizontal=True, key=f"action-{key}")
    feedback = st.text_area("Feedback in plain words (for refine)", key=f"feedback-{key}")
    cols = st.columns(2)
    max_reliance = cols[0].number_input("max reliance (0-1, optional)", min_value=0.0, max_value=1.0,
                                        value=None, step=0.05, key=f"reliance-{key}")
    max_drop = cols[1].number_input("max metric drop (0-1, optional)", min_value=0.0, max_value=1.0,
                                    value=None, step=0.01, key=f"drop-{key}")
    reason = st.text_input("Reason (for reject)", key=f"reason-{key}")
    return {"action": action, "feedback": feedback, "max_reliance": max_reliance,
            "max_metric_drop": max_drop, "reason": reason}
