"""Sign-in for the dashboard: users from a file named by MEDBUILDER_DASHBOARD_USERS.

The file is YAML or JSON mapping each user name to a salted scrypt hash of the password
(``dr-lee: "scrypt$16384$8$1$<salt>$<hash>"``), made with
``python -m medbuilder.dashboards.auth NAME`` (it asks for the password and prints the line).
Unsalted SHA-256 digests and plain tokens are refused. Without the file nobody can sign in,
and approvals and new requests are refused: there is no anonymous approver. The file is read
again at every action, so a user removed from it can no longer act in an open session; after
MAX_FAILURES failed sign-ins a name is locked for LOCK_S seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

import yaml

USERS_ENV = "MEDBUILDER_DASHBOARD_USERS"


class UsersFileError(ValueError):
    """The users file is missing or malformed; the message says what to fix."""


def users_file() -> Path | None:
    value = os.environ.get(USERS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def load_users(file: Path | None = None) -> dict[str, str]:
    """{name: scrypt hash} from the users file; raises UsersFileError."""
    file = file or users_file()
    if file is None:
        raise UsersFileError(f"no users file: set {USERS_ENV} to a YAML or JSON file of "
                             "{name: scrypt hash} (python -m medbuilder.dashboards.auth NAME makes one)")
    if not file.is_file():
        raise UsersFileError(f"{USERS_ENV} points at {file}, which does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise UsersFileError(f"{file} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict) or not data:
        raise UsersFileError(f"{file} must map user names to password hashes, e.g. `dr-lee: \"scrypt$...\"`")
    users = {}
    for name, secret in data.items():
        if not isinstance(secret, str) or not secret:
            raise UsersFileError(f"{file}: user {name!r} needs a scrypt hash: make one with "
                                 f"`python -m medbuilder.dashboards.auth {name}`")
        _check_entry(file, str(name), secret.strip())
        users[str(name)] = secret.strip()
    return users


SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_FAILURES = 5
LOCK_S = 300.0
_failures: dict[str, list[float]] = {}  # user name -> times of recent failed sign-ins (this dashboard process)


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT["n"], r: int = SCRYPT["r"],
                  p: int = SCRYPT["p"]) -> str:
    """A salted scrypt hash of `password`: 'scrypt$n$r$p$salt$hash' (base64)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def _check_entry(file: Path, name: str, stored: str) -> None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        raise UsersFileError(f"{file}: user {name!r} has no scrypt hash (unsalted SHA-256 digests and plain tokens "
                             f"are refused): make one with `python -m medbuilder.dashboards.auth {name}`")


def verify(users: dict[str, str], name: str, password: str) -> bool:
    """True when `password` matches the user's scrypt hash."""
    stored = users.get(name.strip())
    if not stored or not password:
        return False
    _, n, r, p, salt, _digest = stored.split("$")
    return hmac.compare_digest(hash_password(password, base64.b64decode(salt), int(n), int(r), int(p)), stored)


def locked_for(name: str, now: float | None = None) -> float:
    """Seconds until `name` may try again (0 when not locked)."""
    now = time.monotonic() if now is None else now
    recent = [t for t in _failures.get(name.strip(), []) if now - t < LOCK_S]
    _failures[name.strip()] = recent
    return LOCK_S - (now - recent[-MAX_FAILURES]) if len(recent) >= MAX_FAILURES else 0.0


def sign_in(users: dict[str, str], name: str, password: str) -> str | None:
    """The user name when the password is right and the name is not locked; else None (the failure counts)."""
    name = name.strip()
    if locked_for(name) > 0:
        return None
    if verify(users, name, password):
        _failures.pop(name, None)
        return name
    _failures.setdefault(name, []).append(time.monotonic())
    return None


def main(argv: list[str] | None = None) -> None:
    """`python -m medbuilder.dashboards.auth NAME`: print a users-file line for NAME (password asked twice)."""
    import getpass
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m medbuilder.dashboards.auth NAME   (prints 'NAME: \"scrypt$...\"')")
    if sys.stdin.isatty():
        password, again = getpass.getpass("password: "), getpass.getpass("again: ")
        if password != again:
            sys.exit("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        sys.exit("use a password of at least 8 characters")
    print(f'{args[0]}: "{hash_password(password)}"')


if __name__ == "__main__":
    main()
