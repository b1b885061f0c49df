"""Shared rendering: the sign-in box in the sidebar, page registry, small widgets."""

from __future__ import annotations

import streamlit as st

from medbuilder.dashboards import auth

PAGES: dict = {}  # page key -> st.Page, filled by app.py on every script run



def signed_in() -> str | None:
    return st.session_state.get("user")


def sidebar_sign_in() -> None:
    """The sign-in form (or who is signed in) in the sidebar; the user lives in st.session_state."""
    with st.sidebar:
        st.divider()
        try:
            users = auth.load_users()
        except auth.UsersFileError as err:
            st.session_state.pop("user", None)
            st.warning(f"Sign-in is off: {err}. Approvals and new requests are refused.")
            return
        user = signed_in()
        if user and user in users:
            st.markdown(f"Signed in as **{user}**")
            if st.button("Sign out", key="sign_out"):
                st.session_state.pop("user", None)
                st.rerun()
            return
        with st.form("sign_in", clear_on_submit=False):
            st.markdown("**Sign in**")
            name = st.text_input("User name", key="sign_in_name")
            password = st.text_input("Password", type="password", key="sign_in_password")
            if st.form_submit_button("Sign in"):
                wait = auth.locked_for(name)
                if wait > 0:
                    st.error(f"Too many failed sign-ins for this name: try again in {wait:.0f} s.")
                elif auth.sign_in(users, name, password):
                    st.session_state["user"] = name.strip()
                    st.rerun()
                else:
                    st.error("Unknown user or wrong password.")


def require_user(what: str) -> str | None:
    """The signed-in user, still in the users file (read again now), or None after saying why `what` is refused."""
    try:
        users = auth.load_users()
    except auth.UsersFileError as err:
        st.session_state.pop("user", None)
        st.error(f"{what} needs a signed-in user, and sign-in is off: {err}.")
        return None
    user = signed_in()
    if user and user in users:
        return user
    if user:
        st.session_state.pop("user", None)
        st.error(f"{user} is no longer in the users file: signed out.")
        return None
    st.info(f"Sign in (sidebar) to {what.lower()}.")
    return None


def run_link(run_id: str, label: str | None = None) -> None:
    page = PAGES.get("detail")
    if page is not None:
        st.page_link(page, label=label or f"Open {run_id}", query_params={"run": run_id})


def status_text(status: str) -> str:
    """The status as shown in tables: plain words (delivered, rejected, no_fit, running, waiting at GATE)."""
    return status


def image_grid(images: list, columns: int) -> None:
    """Images (paths) in rows of `columns`, each captioned with its file stem."""
    cols = st.columns(columns)
    for i, image in enumerate(images):
        cols[i % columns].image(str(image), caption=image.stem)
