"""Approvals: every run waiting at a gate, its question and a form for the typed answer."""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import data, review_gate, ui
from medbuilder.flows.gates import gate_kind, layout_from_text
from medbuilder.flows.resume import GateInputError, NotWaiting


def _signature() -> tuple:
    """What decides the page's content: the waiting gates and the status of runs answered here."""
    waiting = tuple(sorted((r.run_id, r.pending["gate"]) for r in data.waiting_runs()))
    answered = tuple(sorted(st.session_state.get("answered", {})))
    statuses = tuple((run_id, run.status if (run := data.find_run(run_id)) else "?") for run_id, _ in answered)
    return waiting, statuses


@st.fragment(run_every=3)
def _watch(seen: tuple) -> None:
    """Reruns the page when a run starts or stops waiting (forms are not touched meanwhile)."""
    if _signature() != seen:
        st.rerun()


def render() -> None:
    st.title("Approvals")
    user = ui.require_user("Answer a gate")
    _watch(_signature())
    answered: dict = st.session_state.setdefault("answered", {})
    _answered_runs(answered)
    waiting = [r for r in data.waiting_runs() if (r.run_id, r.pending["gate"]) not in answered]
    if not waiting:
        st.info("No run is waiting at a gate. This page refreshes by itself.")
    for run in waiting:
        _gate(run, user)
    _paused_elsewhere({r.flow_run_id for r in data.list_runs()})


def _answered_runs(answered: dict) -> None:
    for (run_id, gate), decision in sorted(answered.items()):
        run = data.find_run(run_id)
        status = run.shown_status if run else "?"
        st.success(f"`{run_id}`: gate **{gate}** answered **{decision['action']}** by {decision['who']}. "
                   f"The run goes on: {ui.status_text(status)}")
        if run:
            rows = data.stage_rows(run.folder)
            current = next((r for r in reversed(rows) if r["status"] == "running"), None)
            if current:
                st.caption(f"now: {current['stage']} (attempt {current['attempts']}, {current['actions']} actions)")
        ui.run_link(run_id)


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
    samples = data.sample_images(folder)
    for label, paths in samples.items():
        st.markdown(f"**Sample images: {label}**")
        ui.image_grid(paths, 6)


def _form(run: data.RunInfo, gate: str, kind: str, user: str | None) -> None:
    key = f"{run.run_id}-{gate}"
    with st.form(f"form-{key}"):
        if kind == "dataset":
            action = st.radio("Action", ["approve", "pick", "correct", "reject"], horizontal=True,
                              key=f"action-{key}")
            names = data.datacard_names()
            dataset = st.selectbox("Dataset (for pick)", [""] + names, key=f"dataset-{key}")
            layout = st.text_area("Corrected layout (for correct; JSON or YAML, starts from the inferred one)",
                                  value=data.inferred_layout_text(run.folder), height=260, key=f"layout-{key}")
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
            st.session_state["answered"][(run.run_id, gate)] = {"action": values["action"], "who": user}
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
