"""The medbuilder dashboard: `streamlit run dashboards/app.py`.

Pages: New request, Approvals, Runs, Run detail, Datacards. Reads the run folders
(MEDBUILDER_RUNS_DIR), the datacards and the Prefect API (PREFECT_API_URL); sign-in
from the users file named by MEDBUILDER_DASHBOARD_USERS (dashboards/README.md).
"""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import page_approvals, page_datacards, page_detail, page_new, page_runs, ui

st.set_page_config(page_title="medbuilder", page_icon=":material/radiology:", layout="wide")

ui.PAGES.update({
    "new": st.Page(page_new.render, title="New request", icon=":material/edit_note:", default=True),
    "approvals": st.Page(page_approvals.render, title="Approvals", icon=":material/fact_check:", url_path="approvals"),
    "runs": st.Page(page_runs.render, title="Runs", icon=":material/list:", url_path="runs"),
    "detail": st.Page(page_detail.render, title="Run detail", icon=":material/search:", url_path="run"),
    "datacards": st.Page(page_datacards.render, title="Datacards", icon=":material/folder:", url_path="datacards"),
})
page = st.navigation(list(ui.PAGES.values()))
ui.sidebar_sign_in()
page.run()
