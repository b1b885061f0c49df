"""The Prefect server's credentials when `medbuilder up` starts it: nothing on the machine answers a gate
or starts a run without them.

`up` makes a secret once per state folder (``<state>/prefect/api_auth``, mode 0600) and starts the server
with ``PREFECT_SERVER_API_AUTH_STRING``; every part it starts (runner, workers, dashboard, watcher) and
every medbuilder command that talks to that server gets ``PREFECT_API_AUTH_STRING``. Sandboxed scripts
never see it (their environment is an allowlist).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

AUTH_FILE = "api_auth"
USER = "medbuilder"
CLIENT_VARIABLE = "PREFECT_API_AUTH_STRING"
SERVER_VARIABLE = "PREFECT_SERVER_API_AUTH_STRING"
DEFAULT_STATE = Path(".medbuilder") / "stack"  # the stack's state folder (MEDBUILDER_STACK_DIR)
STACK_FILE = "stack.json"  # what `medbuilder up` started, in the state folder


def auth_file(state: Path) -> Path:
    return Path(state) / "prefect" / AUTH_FILE


def ensure_auth(state: Path) -> str:
    """The state folder's auth string ('medbuilder:<secret>'), made on first use, readable by its owner only."""
    file = auth_file(state)
    if file.exists():
        return file.read_text().strip()
    file.parent.mkdir(parents=True, exist_ok=True)
    value = f"{USER}:{secrets.token_urlsafe(32)}"
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def read_auth(state: Path) -> str | None:
    file = auth_file(state)
    return file.read_text().strip() if file.exists() else None


def current_auth() -> str | None:
    return os.environ.get(CLIENT_VARIABLE) or None


@contextlib.contextmanager
def api_settings(api_url: str) -> Iterator[None]:
    """Prefect client settings for `api_url`, with the credentials this process holds."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    values = {PREFECT_API_URL: api_url}
    if current_auth():
        values[PREFECT_API_AUTH_STRING] = current_auth()
    with temporary_settings(values):
        yield


@contextlib.contextmanager
def prefect_client(api_url: str):
    """Prefect's sync client for `api_url`, with the credentials this process holds."""
    from prefect.client.orchestration import get_client

    with api_settings(api_url), get_client(sync_client=True) as client:
        yield client


def load_for_commands(state: Path | None = None) -> None:
    """A medbuilder command talking to the stack's server takes its credentials from the state folder."""
    import json

    if current_auth() or not os.environ.get("PREFECT_API_URL"):
        return
    folder = Path(state or os.environ.get("MEDBUILDER_STACK_DIR") or DEFAULT_STATE)
    try:
        stack = json.loads((folder / STACK_FILE).read_text())
    except (OSError, ValueError):
        return
    auth = read_auth(folder)
    if auth and stack.get("api_url") == os.environ["PREFECT_API_URL"].rstrip("/"):
        os.environ[CLIENT_VARIABLE] = auth
