"""Shared rendering: the sign-in box in the sidebar, page registry, live progress, small widgets."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from medbuilder.dashboards import auth, data, progress

PAGES: dict = {}  # page key -> st.Page, filled by app.py on every script run


# ---------------------------------------------------------------- sign-in


def _session_token() -> str | None:
    """This browser session's token; on its first script run (a new tab or a reload) the cookie's."""
    if "session_token" not in st.session_state:
        st.session_state["session_token"] = st.context.cookies.get(auth.SESSION_COOKIE)
    return st.session_state["session_token"]


def current_user(users: dict[str, str]) -> str | None:
    """The signed-in user: the session token must verify (signed, not expired or revoked, user still in
    the users file with the same password hash)."""
    token = _session_token()
    user = auth.check_session(users, token) if token else None
    if token and not user:  # expired, revoked, or its user left the users file: forget it here and in the browser
        st.session_state["session_token"] = None
        st.session_state["clear_cookie"] = True
    if user:
        st.session_state["user"] = user
    return user


def signed_in() -> str | None:
    return st.session_state.get("user")


def _sign_out() -> None:
    auth.revoke_session(st.session_state.get("session_token"))
    st.session_state["session_token"] = None
    st.session_state["clear_cookie"] = True
    st.session_state.pop("user", None)


def _cookie(token: str | None) -> None:
    """Set (or clear) the session cookie in the browser. Streamlit has no call that sets a cookie, so a
    script does; the server reads it back on a reload through st.context.cookies."""
    if token:
        left = max(0, int(token.split(".")[2]) - int(time.time()))
        value = f"{auth.SESSION_COOKIE}={token}; Max-Age={left}; Path=/; SameSite=Strict"
    else:
        value = f"{auth.SESSION_COOKIE}=; Max-Age=0; Path=/; SameSite=Strict"
    st.html(f"<script>document.cookie = {value!r};</script>", unsafe_allow_javascript=True)


def sidebar_sign_in() -> None:
    """The sign-in form (or who is signed in) in the sidebar; a signed session token keeps it over reloads."""
    with st.sidebar:
        st.divider()
        try:
            users = auth.load_users()
            user = current_user(users)
        except (auth.UsersFileError, auth.SessionError) as err:
            st.session_state.pop("user", None)
            st.warning(f"Sign-in is off: {err}. Approvals and new requests are refused.")
            return
        if user:
            st.markdown(f"Signed in as **{user}**")
            if st.button("Sign out", key="sign_out"):
                _sign_out()
                st.rerun()
            _cookie(st.session_state["session_token"])
            return
        if st.session_state.pop("clear_cookie", False):
            _cookie(None)
        with st.form("sign_in", clear_on_submit=False):
            st.markdown("**Sign in**")
            name = st.text_input("User name", key="sign_in_name")
            password = st.text_input("Password", type="password", key="sign_in_password")
            if st.form_submit_button("Sign in"):
                _try_sign_in(users, name, password)


def _try_sign_in(users: dict[str, str], name: str, password: str) -> None:
    wait = auth.locked_for(name)
    if wait > 0:
        st.error(f"Too many failed sign-ins for this name: try again in {wait:.0f} s.")
    elif auth.sign_in(users, name, password):
        st.session_state["session_token"] = auth.issue_session(users, name.strip())
        st.session_state["user"] = name.strip()
        st.rerun()
    else:
        st.error("Unknown user or wrong password.")


def require_user(what: str) -> str | None:
    """The signed-in user, still in the users file (read again now), or None after saying why `what` is refused."""
    try:
        users = auth.load_users()
        user = current_user(users)
    except (auth.UsersFileError, auth.SessionError) as err:
        st.session_state.pop("user", None)
        st.error(f"{what} needs a signed-in user, and sign-in is off: {err}.")
        return None
    if user:
        return user
    gone = st.session_state.pop("user", None)
    if gone:
        st.session_state["session_token"] = None
        st.error(f"{gone} is no longer in the users file: signed out." if gone not in users
                 else f"The session of {gone} ended (signed out elsewhere or expired): sign in again.")
        return None
    st.info(f"Sign in (sidebar) to {what.lower()}.")
    return None


# ---------------------------------------------------------------- live progress


def now_line(folder) -> data.Now | None:
    """The running stage: elapsed time and actions so far; while training, epoch, loss, ETA and a bar."""
    now = data.run_now(folder)
    if now is None:
        return None
    st.markdown(f"**Now: {now.stage}** · {progress.duration_text(now.seconds)} so far · {now.actions} actions")
    training = now.training
    if training is not None:
        label = f"Training: {training.text()}"
        if training.fraction is not None:
            st.progress(training.fraction, text=label)
        else:
            st.markdown(label)
    elif now.role == "model_trainer" and now.script is None:
        st.caption("Training has not written its first epoch yet.")
    if now.script is not None:  # within the epoch: caching, or the batch
        st.progress(now.script.fraction or 0.0, text=f"Now: {now.script.text}")
    return now


def training_chart(log: list[dict]) -> None:
    """Loss per epoch: training, and validation when the run holds a validation split out."""
    frame = pd.DataFrame(log)
    columns = [c for c in ("train_loss", "val_loss", "val_metric") if c in frame and frame[c].notna().any()]
    if "epoch" in frame and columns:
        st.line_chart(frame.set_index("epoch")[columns], x_label="epoch", height=220)
    if "val_loss" not in columns:
        st.caption("No validation split in this training (val_loss is empty): the curve is the training loss.")


# ---------------------------------------------------------------- small widgets


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
