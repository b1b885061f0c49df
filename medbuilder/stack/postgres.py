"""A private PostgreSQL cluster on loopback for the Prefect server (`medbuilder up --database postgres`).

Debian's ``postgresql`` package gives the binaries (``/usr/lib/postgresql/<version>/bin``; set
``MEDBUILDER_PG_BIN`` to use others). The cluster is one data folder: ``initdb`` (trust authentication,
superuser ``postgres``), ``pg_ctl start`` listening on 127.0.0.1 only with its socket in the data folder,
then ``createdb prefect``. PostgreSQL refuses to run as root, so when we are root every command runs as the
``postgres`` user, and the data folder must be owned by it and reachable by it: a folder under /root (mode
700) is not, and then the cluster goes to ``/var/tmp/medbuilder-postgres/<hash of the wanted folder>``
(stable, so `down` then `up` finds the same database).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DATABASE = "prefect"
FALLBACK_ROOT = Path("/var/tmp/medbuilder-postgres")


class PostgresError(RuntimeError):
    """PostgreSQL could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        """What Prefect's PREFECT_API_DATABASE_CONNECTION_URL takes."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"

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


def _run(args: list[str], what: str, timeout: float = 60) -> str:
    cmd = (["runuser", "-u", "postgres", "--"] if _as_root() else []) + args
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd="/")
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
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(existing)], cwd="/",
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
    if cluster.pid and _alive(cluster.pid):
        raise PostgresError(f"PostgreSQL already runs on {folder} (pid {cluster.pid}): "
                            f"stop it with `{binaries / 'pg_ctl'} -D {folder} stop`")
    if not (folder / "PG_VERSION").exists():
        _prepare_folder(folder)
        _run([str(binaries / "initdb"), "-D", str(folder), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
             "initdb", timeout=120)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    _run([str(binaries / "pg_ctl"), "-D", str(folder), "-l", str(folder / "server.log"), "-w", "-t", "60",
          "-o", options, "start"], f"pg_ctl start (log {folder / 'server.log'})", timeout=90)
    databases = _run([str(binaries / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c",
                      "SELECT datname FROM pg_database"], "listing databases").split()
    if DATABASE not in databases:
        _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE], "createdb")
    return cluster


def stop(data_dir: Path, timeout: float = 60) -> None:
    """Fast shutdown (disconnects clients, no crash recovery next time); nothing when it is not running."""
    folder = Path(data_dir)
    if not (folder / "postmaster.pid").exists():
        return
    _run([str(pg_bin() / "pg_ctl"), "-D", str(folder), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
         "pg_ctl stop", timeout=timeout + 30)


def query(port: int, sql: str) -> list[list[str]]:
    """Rows of `sql` on the prefect database (psql, unaligned, `|` between columns)."""
    out = _run([str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", DATABASE,
                "-At", "-c", sql], "psql")
    return [line.split("|") for line in out.splitlines() if line]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
