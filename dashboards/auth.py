"""Sign-in for the dashboard: users from a file named by MEDBUILDER_DASHBOARD_USERS.

The file is YAML or JSON mapping each user name to either the SHA-256 hex digest of
the password (``dr-lee: 5e884898...``; make one with
``python -c "import hashlib,getpass; print(hashlib.sha256(getpass.getpass().encode()).hexdigest())"``)
or, for a plain shared token, ``"plain:<token>"``. Without the file nobody can sign
in, and approvals and new requests are refused: there is no anonymous approver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import yaml

USERS_ENV = "MEDBUILDER_DASHBOARD_USERS"


class UsersFileError(ValueError):
    """The users file is missing or malformed; the message says what to fix."""


def users_file() -> Path | None:
    value = os.environ.get(USERS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def load_users(file: Path | None = None) -> dict[str, str]:
    """{name: "sha256 hex" | "plain:token"} from the users file; raises UsersFileError."""
    file = file or users_file()
    if file is None:
        raise UsersFileError(f"no users file: set {USERS_ENV} to a YAML or JSON file of "
                             "{name: sha256-of-password} (see dashboards/README.md)")
    if not file.is_file():
        raise UsersFileError(f"{USERS_ENV} points at {file}, which does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise UsersFileError(f"{file} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict) or not data:
        raise UsersFileError(f"{file} must map user names to password hashes, e.g. `dr-lee: <sha256 hex>`")
    users = {}
    for name, secret in data.items():
        if not isinstance(secret, str) or not secret:
            raise UsersFileError(f"{file}: user {name!r} needs a sha256 hex digest or 'plain:<token>'")
        users[str(name)] = secret.strip()
    return users


def hash_password(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def verify(users: dict[str, str], name: str, password: str) -> bool:
    """True when `password` matches the user's entry (sha256 digest, or plain:token)."""
    stored = users.get(name.strip())
    if not stored or not password:
        return False
    if stored.startswith("plain:"):
        return hmac.compare_digest(stored[len("plain:"):].encode(), password.encode())
    digest = stored.removeprefix("sha256:").lower()
    return hmac.compare_digest(digest.encode(), hash_password(password).encode())
