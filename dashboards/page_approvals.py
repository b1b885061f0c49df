"""Approvals: every run waiting at a gate, its question and a form for the typed answer."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medbuilder.dashboards import data, dataset_evidence as evidence, review_gate, ui
from medbuilder.lifecycle.answer import GateInputError, NotWaiting
from medbuilder.lifecycle.gate_forms import gate_kind, layout_from_text


REFRESH_S = 3


def _signature() -> tuple:
    """What decides which forms the page shows: the runs waiting and their gates."""
    return tuple(sorted((r.run_id, r.pending["gate"]) for r in data.waiting_runs()))


@st.fragment(run_every=REFRESH_S)
def _watch(seen: tuple) -> None:
    """Reruns the page when a run starts or stops waiting (forms are not touched meanwhile)."""
    if _signature() != seen:
        st.rerun()


def render() -> None:
    st.title("Approvals")
    user = ui.require_user("Answer a gate")
    _watch(_signature())
    answered: dict = st.session_state.setdefault("answered", {})  # run id -> the latest answer given here
    if answered:
        _answered_runs()
    waiting = [r for r in data.waiting_runs() if _answered_gate(r.run_id) != r.pending["gate"]]
    if not waiting:
        st.info("No run is waiting at a gate. This page refreshes by itself.")
    for run in waiting:
        _gate(run, user)
    _paused_elsewhere({r.flow_run_id for r in data.list_runs()})


def _answered_gate(run_id: str) -> str | None:
    return (st.session_state.get("answered", {}).get(run_id) or {}).get("gate")


@st.fragment(run_every=REFRESH_S)
def _answered_runs() -> None:
    """One banner per run answered here, its status read again from the run folder every few seconds; a
    run that waits at a new gate loses its banner (the new gate's form is below)."""
    answered: dict = st.session_state.get("answered", {})
    for run_id in list(answered):
        decision = answered[run_id]
        run = data.find_run(run_id)
        if run and run.pending and run.pending["gate"] != decision["gate"]:
            del answered[run_id]  # it waits at a new gate: that gate's form replaces the banner
            continue
        _banner(run_id, run, decision)


def _banner(run_id: str, run: data.RunInfo | None, decision: dict) -> None:
    gate = decision["gate"]
    with st.container(border=True):
        st.success(f"`{run_id}`: gate **{gate}** answered **{decision['action']}** by {decision['who']}. "
                   f"The run goes on: {_status_after(run, gate)}")
        if decision.get("action") == "refine" and run:
            review_gate.show_reading(review_gate.written_reading(run.folder, gate) or decision.get("reading"))
        if run and run.status in data.ACTIVE and not run.pending:
            ui.now_line(run.folder)
        ui.run_link(run_id)


def _status_after(run: data.RunInfo | None, gate: str) -> str:
    """The run's status as its folder says now; 'resuming' while it still shows the gate just answered."""
    if run is None:
        return "?"
    if run.pending and run.pending["gate"] == gate:
        return f"resuming from {gate}"
    return ui.status_text(run.shown_status)


def _gate(run: data.RunInfo, user: str | None) -> None:
    gate = run.pending["gate"]
    kind = gate_kind(gate)
    folder = run.folder
    with st.container(border=True):
        st.subheader(f"{run.run_id} · {gate}")
        st.caption(f"Request: {run.request} · waiting since {run.pending.get('asked', '?')}")
        st.markdown(data.gate_question(folder, gate))
        if kind == "review":
            review_gate.evidence(folder, int(gate.split("-", 1)[1]))
        elif kind == "dataset":
            _dataset_samples(folder)
        _form(run, gate, kind, user)


def _dataset_samples(folder) -> None:
    """The dataset gate's evidence beside the question: licence, why this card, counts per class and split,
    duplicate groups, and sample images per class."""
    _licence(folder)
    _candidate_scores(folder)
    counts = evidence.split_counts(folder)
    if counts:
        st.markdown("**Images per class and split**")
        st.dataframe(pd.DataFrame(counts), hide_index=True)
    duplicates = evidence.duplicate_summary(folder)
    if duplicates.records:
        box = st.warning if duplicates.across or duplicates.patients_across else st.info
        box(f"**Duplicate groups.** {duplicates.text()}")
    samples = evidence.sample_images(folder)
    for label, paths in samples.items():
        st.markdown(f"**Sample images: {label}**")
        ui.image_grid(paths, 6)


def _licence(folder) -> None:
    found = evidence.licence(folder)
    if found is None:
        st.warning("**Licence:** the datacard states none. Check the terms before training on this data.")
    elif found["restrictions"]:
        st.warning(f"**Licence of {found['dataset']} restricts use: {', '.join(found['restrictions'])}.** "
                   f"{found['text']}\n\nA model trained on it carries these limits.")
    else:
        st.info(f"**Licence of {found['dataset']}:** {found['text']}")


def _candidate_scores(folder) -> None:
    rows = evidence.candidate_scores(folder)
    if not rows:
        return
    chosen = evidence.chosen_score_text(folder, rows)
    if chosen:
        st.markdown(f"**The Task Manager's score.** {chosen}")
    with st.expander("How the score is computed, for every datacard", expanded=False):
        st.markdown(evidence.score_explained())
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def _form(run: data.RunInfo, gate: str, kind: str, user: str | None) -> None:
    key = f"{run.run_id}-{gate}"
    with st.form(f"form-{key}"):
        if kind == "dataset":
            action = st.radio("Action", ["approve", "pick", "correct", "reject"], horizontal=True,
                              key=f"action-{key}")
            names = data.datacard_names()
            dataset = st.selectbox("Dataset (for pick)", [""] + names, key=f"dataset-{key}")
            layout = st.text_area("Corrected layout (for correct; JSON or YAML, starts from the inferred one)",
                                  value=evidence.inferred_layout_text(run.folder), height=260, key=f"layout-{key}")
            reason = st.text_input("Reason (for reject)", key=f"reason-{key}")
            values = {"action": action, "dataset": dataset, "reason": reason, "layout_text": layout}
        else:
            values = review_gate.form_fields(run.folder, gate, key)
        submitted = st.form_submit_button(f"Submit answer to {gate}", disabled=user is None)
    if submitted and user:
        try:
            layout_text = values.pop("layout_text", None)
            if values["action"] == "correct":
                values["layout"] = layout_from_text(layout_text)
            data.answer(run.folder, values, who=user)
        except (GateInputError, NotWaiting, ValueError) as err:
            st.error(str(err))
        except Exception as err:  # Prefect refused (e.g. the API is down): say so, keep the form
            st.error(f"Prefect did not resume the run: {type(err).__name__}: {err}")
        else:
            st.session_state.setdefault("answered", {})[run.run_id] = {
                "gate": gate, "action": values["action"], "who": user,
                "reading": review_gate.reading_of(run.folder, gate, values) if values["action"] == "refine" else None}
            st.rerun()


def _paused_elsewhere(known: set) -> None:
    """Flow runs Prefect shows as paused that no run folder here belongs to."""
    paused, error = data.paused_flow_runs()
    if error:
        st.caption(f"Prefect API not reachable ({error}); showing the run folders only.")
        return
    others = [p for p in paused if p["flow_run_id"] not in known]
    if others:
        st.subheader("Paused in Prefect, run folder not here")
        st.caption(f"These flow runs write to another runs folder than {data.runs_dir()}; answer them "
                   "where their run folder is, or in the Prefect UI.")
        for p in others:
            url = data.ui_url(p["flow_run_id"])
            st.markdown(f"- {p['name']} (`{p['flow_run_id']}`, gate {p['key'] or '?'})"
                        + (f": [Prefect UI]({url})" if url else ""))
