"""The medbuilder dashboard: started by `medbuilder up` with the options in dashboards/launch.py
(`python -m medbuilder.dashboards.launch --port 8501` alone).

Pages: New request, Approvals, Runs, Run detail, Datacards. Reads the run folders
(MEDBUILDER_RUNS_DIR), the datacards and the Prefect API (PREFECT_API_URL); sign-in
from the users file named by MEDBUILDER_DASHBOARD_USERS (dashboards/README.md).
"""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import page_approvals, page_datacards, page_detail, page_new, page_runs, ui

# An inline SVG (served as a data: URL). A ":material/...:" page icon makes the browser fetch the favicon from
# fonts.gstatic.com, which fails in an air-gapped hospital; the sidebar's material icons are bundled fonts.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           'fill="#1f4e79"/><circle cx="16" cy="16" r="9" fill="none" stroke="#fff" stroke-width="3"/>'
           '<path d="M16 10v12M10 16h12" stroke="#fff" stroke-width="3"/></svg>')
st.set_page_config(page_title="medbuilder", page_icon=FAVICON, layout="wide")

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
