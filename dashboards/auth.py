"""Sign-in for the dashboard: users from a file named by MEDBUILDER_DASHBOARD_USERS.

The file is YAML or JSON mapping each user name to a salted scrypt hash of the password
(``dr-lee: "scrypt$16384$8$1$<salt>$<hash>"``), made with
``python -m medbuilder.dashboards.auth NAME`` (it asks for the password and prints the line).
Unsalted SHA-256 digests and plain tokens are refused. Without the file nobody can sign in,
and approvals and new requests are refused: there is no anonymous approver. The file is read
again at every action, so a user removed from it can no longer act in an open session; after
MAX_FAILURES failed sign-ins a name is locked for LOCK_S seconds.

A sign-in survives a page reload through a signed session token in the cookie SESSION_COOKIE:
HMAC-SHA256 with a secret kept in the state folder (mode 0600), bound to the user and their password
hash, with an expiry (SESSION_S); sign-out revokes it, and removing the user from the file ends it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
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


# ---------------------------------------------------------------- sessions that outlive a page reload

SESSION_COOKIE = "medbuilder_session"
SESSION_S = 12 * 3600  # a working day; then sign in again
STATE_ENV = "MEDBUILDER_DASHBOARD_STATE"
SECRET_FILE = "session_secret"
REVOKED_FILE = "revoked_sessions.json"


class SessionError(RuntimeError):
    """The session secret cannot be made or is not private; the message says what to fix."""


def state_folder() -> Path:
    """Where the session secret and the revoked sessions live: MEDBUILDER_DASHBOARD_STATE, else
    <stack state>/dashboard (medbuilder up's state folder, MEDBUILDER_STACK_DIR or .medbuilder/stack)."""
    value = os.environ.get(STATE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("MEDBUILDER_STACK_DIR") or Path(".medbuilder") / "stack") / "dashboard"


def _private_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SessionError(f"{folder} must be a folder of this user with mode 0700 (chmod 700 {folder})")
    return folder


def session_secret(folder: Path | None = None) -> bytes:
    """The server-side HMAC key (made once: 32 random bytes in <state>/session_secret, mode 0600)."""
    file = _private_folder(folder or state_folder()) / SECRET_FILE
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise SessionError(f"{file} cannot be read ({err.strerror}); remove it and it is made again") from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise SessionError(f"{file} must be private to this user (chmod 600 {file})")
        key = handle.read().strip()
    if len(key) < 64:
        raise SessionError(f"{file} is not a session secret; remove it and it is made again")
    return key.encode()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")


def _mac(key: bytes, user: str, expires: int, sid: str, stored: str) -> str:
    """HMAC-SHA256 over the user, expiry, session id and the user's password hash (a new password or a
    removed user ends every session)."""
    message = "|".join(["v1", user, str(expires), sid, hashlib.sha256(stored.encode()).hexdigest()])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def issue_session(users: dict[str, str], user: str, now: float | None = None, folder: Path | None = None) -> str:
    """A signed session token for `user`: 'v1.<user>.<expiry>.<session id>.<hmac>' (cookie-safe)."""
    expires = int((time.time() if now is None else now) + SESSION_S)
    sid = secrets.token_urlsafe(16)
    mac = _mac(session_secret(folder), user, expires, sid, users[user])
    return ".".join(["v1", _b64(user), str(expires), sid, mac])


def _parts(token: str) -> tuple[str, int, str, str] | None:
    parts = token.split(".") if isinstance(token, str) and len(token) < 2048 else []
    if len(parts) != 5 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    try:
        return _unb64(parts[1]), int(parts[2]), parts[3], parts[4]
    except ValueError:
        return None


def check_session(users: dict[str, str], token: str | None, now: float | None = None,
                  folder: Path | None = None) -> str | None:
    """The user a token signs in, when its HMAC is right, it has not expired or been revoked, and the user
    is still in the users file with the same password hash; else None."""
    parts = _parts(token) if token else None
    if parts is None:
        return None
    user, expires, sid, mac = parts
    if user not in users or expires < (time.time() if now is None else now):
        return None
    if not hmac.compare_digest(mac, _mac(session_secret(folder), user, expires, sid, users[user])):
        return None
    return None if sid in _revoked(folder or state_folder()) else user


def _revoked(folder: Path) -> dict[str, int]:
    try:
        fd = os.open(folder / REVOKED_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return {}
    with os.fdopen(fd) as handle:
        try:
            data = json.load(handle)
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def revoke_session(token: str | None, folder: Path | None = None, now: float | None = None) -> None:
    """Refuse this token from now on (sign-out); expired entries are dropped from the list."""
    parts = _parts(token) if token else None
    if parts is None:
        return
    import fcntl

    folder = _private_folder(folder or state_folder())
    now = time.time() if now is None else now
    with open(folder / f"{REVOKED_FILE}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = {sid: exp for sid, exp in _revoked(folder).items() if isinstance(exp, int) and exp >= now}
        kept[parts[2]] = parts[1]
        tmp = folder / f"{REVOKED_FILE}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle)
        tmp.replace(folder / REVOKED_FILE)


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
