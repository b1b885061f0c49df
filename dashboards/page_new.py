"""New request: start a run of the deployment build_model/build."""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import data, ui


def render() -> None:
    st.title("New request")
    st.caption(f"Starts a run of the Prefect deployment `{data.DEPLOYMENT}`; its gates wait for you under Approvals.")
    user = ui.require_user("Start a build")
    names = data.datacard_names()
    with st.form("new_request"):
        request = st.text_area("What should the model do?", key="request_text",
                               placeholder="Classify brain MRI slices as tumour or no tumour; "
                                           "it must look at the brain, not at text on the image")
        dataset = st.selectbox("Dataset (optional: the Task Manager chooses when empty)", [""] + names,
                               key="request_dataset")
        core = st.selectbox("Agent core", ["offline", "llm"], key="request_core",
                            help="offline: deterministic policies; llm: an OpenAI-compatible endpoint")
        submitted = st.form_submit_button("Start build", disabled=user is None)
    if submitted and user:
        try:
            started = data.start_build(request, dataset or None, core)
        except data.DeploymentMissing as err:
            st.error(str(err))
        except ValueError as err:  # BadRequest: the request is too short
            st.error(str(err))
        else:
            st.session_state["started"] = started
    started = st.session_state.get("started")
    if started:
        st.success(f"Started flow run **{started['name']}** (`{started['flow_run_id']}`)")
        if started.get("url"):
            st.markdown(f"[Open it in the Prefect UI]({started['url']})")
        run = data.run_for_flow_run(started["flow_run_id"])
        if run:
            st.markdown(f"Run folder `{run.run_id}`: {ui.status_text(run.shown_status)}")
            ui.run_link(run.run_id)
        else:
            st.caption("The run folder appears under Runs once a worker has picked the flow run up.")
        if ui.PAGES.get("approvals") is not None:
            st.page_link(ui.PAGES["approvals"], label="Go to Approvals")
