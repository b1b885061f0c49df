"""Runs: every run folder, and per run the stage records with a timeline."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from medbuilder.dashboards import data, ui
from medbuilder.flows.runs import role_table


def render() -> None:
    st.title("Runs")
    st.caption(f"Run folders under `{data.runs_dir()}`")
    runs = data.list_runs()
    if any(r.status in data.ACTIVE for r in runs):
        _live()
    else:
        _body()


@st.fragment(run_every=3)
def _live() -> None:
    """While a run is going, the table refreshes itself every 3 s."""
    _body()
    if not any(r.status in data.ACTIVE for r in data.list_runs()):
        st.rerun()  # the last run ended: one full rerun, then no more refreshing


def _body() -> None:
    runs = data.list_runs()
    if not runs:
        st.info("No runs yet. Start one under New request.")
        return
    table = pd.DataFrame([{"run": r.run_id, "status": ui.status_text(r.shown_status), "request": r.request,
                           "dataset": r.dataset or "", "created": r.created} for r in runs])
    st.dataframe(table, hide_index=True)
    for run in runs:
        with st.expander(f"{run.run_id} · {run.shown_status}", expanded=run is runs[0]):
            _run_stages(run)


def _run_stages(run: data.RunInfo) -> None:
    folder = run.folder
    st.caption(f"Request: {run.request} · dataset {run.dataset or '-'} · created {run.created}")
    roles = role_table(folder)
    if roles:
        st.markdown("**Per role**")
        st.dataframe(pd.DataFrame([{"role": k, **v} for k, v in roles.items()]), hide_index=True)
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
