"""A private PostgreSQL cluster on loopback for the Prefect server (`medbuilder up --database postgres`).

Debian's ``postgresql`` package gives the binaries (``/usr/lib/postgresql/<version>/bin``; set
``MEDBUILDER_PG_BIN`` to use others). The cluster is one data folder: ``initdb`` (scram-sha-256
password authentication for every connection, superuser ``postgres`` with a generated password kept in
``<state>/postgres.secret``, mode 0600), ``pg_ctl start`` listening on 127.0.0.1 only with its unix socket
in the data folder (mode 0700, owned by the server's user), then ``createdb prefect``. PostgreSQL refuses to run as root, so when we are root every command runs as the
``postgres`` user, and the data folder must be owned by it and reachable by it: a folder under /root (mode
700) is not, and then the cluster goes to ``/var/tmp/medbuilder-postgres/<hash of the wanted folder>``
(stable, so `down` then `up` finds the same database).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from medbuilder.proctree import running

DATABASE = "prefect"
SECRET_FILE = "postgres.secret"
FALLBACK_ROOT = Path("/var/tmp/medbuilder-postgres")


class PostgresError(RuntimeError):
    """PostgreSQL could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    port: int
    password: str = ""

    @property
    def url(self) -> str:
        """Where the database is, without the password (for logs and the console)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def connection_url(self) -> str:
        """What Prefect's PREFECT_API_DATABASE_CONNECTION_URL takes: with the password."""
        return f"postgresql+asyncpg://postgres:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), None when it is not running."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def pg_bin() -> Path:
    """The folder of initdb/pg_ctl: MEDBUILDER_PG_BIN, else the newest /usr/lib/postgresql/<v>/bin."""
    if os.environ.get("MEDBUILDER_PG_BIN"):
        return Path(os.environ["MEDBUILDER_PG_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise PostgresError("PostgreSQL is not installed (no /usr/lib/postgresql/<version>/bin/pg_ctl): "
                            "`apt-get install -y postgresql`, or set MEDBUILDER_PG_BIN to the folder of pg_ctl")
    return versions[-1].parent


def _as_root() -> bool:
    return os.geteuid() == 0


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as the postgres user (root only). runuser is in /usr/sbin or
    /sbin, which a user's PATH may lack."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise PostgresError("runuser is not installed (util-linux): medbuilder runs PostgreSQL as the postgres "
                            "user with it when started as root; `apt-get install -y util-linux`")
    return [found, "-u", "postgres", "--"]


def _run(args: list[str], what: str, timeout: float = 60, password: str | None = None) -> str:
    cmd = (_as_postgres() if _as_root() else []) + args
    env = {**os.environ, "PGPASSWORD": password} if password else None
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd="/",
                            env=env)
    if result.returncode != 0:
        raise PostgresError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result.stdout


def _reachable_by_postgres(folder: Path) -> bool:
    """Every folder above `folder` lets the postgres user through."""
    if not _as_root():
        return True
    existing = folder
    while not existing.exists():
        existing = existing.parent
    probe = subprocess.run([*_as_postgres(), "test", "-x", str(existing)], cwd="/",
                           capture_output=True)
    return probe.returncode == 0


def data_dir_for(wanted: Path) -> Path:
    """`wanted` when the postgres user can reach it, else a stable folder under /var/tmp."""
    wanted = Path(wanted).resolve()
    if _reachable_by_postgres(wanted.parent):
        return wanted
    digest = hashlib.sha1(str(wanted).encode()).hexdigest()[:12]
    return FALLBACK_ROOT / digest


def _prepare_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if _as_root():
        if folder.parent == FALLBACK_ROOT:
            FALLBACK_ROOT.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)


def start(wanted_dir: Path, port: int) -> Cluster:
    """Create the cluster (first time) and the `prefect` database, start it on 127.0.0.1:`port`."""
    binaries = pg_bin()
    cluster = Cluster(data_dir_for(wanted_dir), port)
    folder = cluster.data_dir
    if cluster.pid and running(cluster.pid):
        raise PostgresError(f"PostgreSQL already runs on {folder} (pid {cluster.pid}): "
                            f"stop it with `{binaries / 'pg_ctl'} -D {folder} stop`")
    secret_file = Path(wanted_dir).resolve().parent / SECRET_FILE
    if not (folder / "PG_VERSION").exists():
        _prepare_folder(folder)
        password = _new_secret(secret_file)
        _initdb(binaries, folder, password)
    elif not secret_file.exists():
        raise PostgresError(f"the cluster in {folder} has no password in {secret_file} (an older cluster, made with "
                            f"trust authentication): stop it and remove {folder} so that `medbuilder up` makes a new one")
    cluster = Cluster(folder, port, secret_file.read_text().strip())
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    _run([str(binaries / "pg_ctl"), "-D", str(folder), "-l", str(folder / "server.log"), "-w", "-t", "60",
          "-o", options, "start"], f"pg_ctl start (log {folder / 'server.log'})", timeout=90)
    databases = _run([str(binaries / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c",
                      "SELECT datname FROM pg_database"], "listing databases", password=cluster.password).split()
    if DATABASE not in databases:
        _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE], "createdb",
             password=cluster.password)
    return cluster


def _new_secret(file: Path) -> str:
    password = secrets.token_urlsafe(32)
    file.unlink(missing_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _initdb(binaries: Path, folder: Path, password: str) -> None:
    """initdb with scram-sha-256 for local and host connections; the password passes in a file only the server's
    user reads, removed afterwards."""
    pwfile = folder.parent / f".{folder.name}.pw"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if _as_root():
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        _run([str(binaries / "initdb"), "-D", str(folder), "-A", "scram-sha-256", f"--pwfile={pwfile}", "-U",
              "postgres", "-E", "UTF8", "--no-sync"], "initdb", timeout=120)
    finally:
        pwfile.unlink(missing_ok=True)


def stop(data_dir: Path, timeout: float = 60) -> None:
    """Fast shutdown (disconnects clients, no crash recovery next time); nothing when it is not running."""
    folder = Path(data_dir)
    if not (folder / "postmaster.pid").exists():
        return
    _run([str(pg_bin() / "pg_ctl"), "-D", str(folder), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
         "pg_ctl stop", timeout=timeout + 30)


def query(port: int, sql: str, password: str | None = None) -> list[list[str]]:
    """Rows of `sql` on the prefect database (psql, unaligned, `|` between columns)."""
    out = _run([str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", DATABASE,
                "-At", "-c", sql], "psql", password=password)
    return [line.split("|") for line in out.splitlines() if line]



