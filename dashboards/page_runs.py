"""Runs: every run folder, and per run what it does now, the stage records and a timeline."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from medbuilder.dashboards import data, ui

REFRESH_S = 3


def render() -> None:
    st.title("Runs")
    st.caption(f"Run folders under `{data.runs_dir()}`")
    runs = data.list_runs()
    if any(r.status in data.ACTIVE for r in runs):
        _live()
    else:
        _body()


@st.fragment(run_every=REFRESH_S)
def _live() -> None:
    """While a run is going, the page refreshes itself every few seconds (epoch, loss, ETA, stage times)."""
    _body()
    if not any(r.status in data.ACTIVE for r in data.list_runs()):
        st.rerun()  # the last run ended: one full rerun, then no more refreshing


def _body() -> None:
    runs = data.list_runs()
    if not runs:
        st.info("No runs yet. Start one under New request.")
        return
    table = pd.DataFrame([{"run": r.run_id, "status": ui.status_text(r.shown_status), "now": _now_text(r),
                           "request": r.request, "dataset": r.dataset or "", "created": r.created} for r in runs])
    st.dataframe(table, hide_index=True)
    for run in runs:
        with st.expander(f"{run.run_id} · {run.shown_status}", expanded=run is runs[0] or run.status in data.ACTIVE):
            _run_stages(run)


def _now_text(run: data.RunInfo) -> str:
    """The table's 'now' column: the running stage, and the training's epoch, loss and ETA."""
    if run.status not in data.ACTIVE or run.pending:
        return ""
    now = data.run_now(run.folder)
    return now.text() if now else ""


def _run_stages(run: data.RunInfo) -> None:
    folder = run.folder
    st.caption(f"Request: {run.request} · dataset {run.dataset or '-'} · created {run.created}")
    if run.status in data.ACTIVE and not run.pending:
        ui.now_line(folder)
    roles = data.role_rows(folder)
    if roles:
        st.markdown("**Per role**")
        st.dataframe(pd.DataFrame(roles), hide_index=True)
    rows = data.stage_rows(folder)
    if rows:
        st.markdown("**Stages**")
        st.dataframe(pd.DataFrame(rows).drop(columns=["error"]), hide_index=True)
        failed = [r for r in rows if r["error"]]
        for r in failed:
            st.caption(f"{r['stage']}: {r['error']}")
    timeline = data.timeline_rows(folder)
    if timeline:
        frame = pd.DataFrame(timeline)[["stage", "role", "status", "start", "end", "seconds"]]
        chart = alt.Chart(frame).mark_bar().encode(
            x=alt.X("start:T", title="time"), x2="end:T",
            y=alt.Y("stage:N", sort=list(frame["stage"]), title=None),
            color=alt.Color("role:N"), tooltip=["stage", "status", "seconds"])
        st.altair_chart(chart, key=f"timeline-{run.run_id}")
    ui.run_link(run.run_id, "Run detail")
