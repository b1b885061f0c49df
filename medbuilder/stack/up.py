"""`medbuilder up | down | status`: the Prefect server, the deployments, the dashboard and the watcher.

Each part runs as its own process (its own session and process group) with its log in the state folder
(default ``.medbuilder/stack``, which holds a ``.gitignore`` of ``*`` so nothing there reaches git):

- ``postgres`` (only with ``--database postgres``): a private PostgreSQL cluster on 127.0.0.1
  (``medbuilder/stack/postgres.py``), data under ``<state>/postgres`` (or /var/tmp, see there);
- ``prefect``: ``prefect server start --host 127.0.0.1 --port N``, SQLite under ``<state>/prefect`` (default) or
  that PostgreSQL; it creates the global concurrency limit on training (``medbuilder/stack/pool.py``);
- ``serve``: ``python -m medbuilder.flows.deployments`` (the deployments and the runner of their runs; it also
  registers the gate notifications of ``MEDBUILDER_NOTIFY_*``, ``medbuilder/stack/notify.py``);
- ``dashboard``: ``streamlit run dashboards/app.py`` (skipped, saying so, while that file is missing);
- ``worker-1`` .. ``worker-N`` (only with ``--workers N``): ``prefect worker start`` on the process work pool
  ``medbuilder-process``, which gets the deployment ``build_model/pool``;
- ``watch``: ``python -m medbuilder.stack.watch`` (emits an event for a new or changed datacard).

``stack.json`` records what runs: pids, process groups, ports, URLs and log files. ``down`` stops the parts
in reverse order (SIGTERM to the process group and to every process below it, SIGKILL after a grace),
including the flow runs the runner started in sessions of their own, and checks that none is left.

How each part starts is in ``parts.py``; whether it is ready is asked of the server through Prefect's own client
(``ready.py``); ``state.py`` reads and writes ``stack.json``; process trees go through psutil (``processes.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from medbuilder.stack.auth import CLIENT_VARIABLE, STACK_FILE, auth_file, current_auth, read_auth
from medbuilder.stack.parts import (DASHBOARD_APP, dashboard_url, start_dashboard, start_postgres, start_prefect,
                                    start_serve, start_watch, start_workers)
from medbuilder.stack.processes import part_running, stop_part
from medbuilder.stack.ready import deployments_ready, http_ok, server_healthy, workers_ready
from medbuilder.stack.state import StackError, read_stack, state_dir, write_stack

PARTS = ("postgres", "prefect", "serve", "workers", "dashboard", "watch")  # start order; down goes backwards
ONLY_PARTS = ("prefect", "serve", "dashboard", "watch")
DATABASES = ("sqlite", "postgres")
__all__ = ["StackError", "down", "free_port", "http_ok", "port_free", "read_stack", "state_dir", "status", "up"]


# --- processes -------------------------------------------------------------------------------------------

def rank(name: str) -> int:
    """Position of a part in the start order (worker-<k> parts sit at "workers")."""
    return PARTS.index("workers" if name.startswith("worker-") else name)


def stop_order(parts: dict) -> list[str]:
    return sorted(parts, key=rank, reverse=True)


# --- ports -----------------------------------------------------------------------------------------------

def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- up --------------------------------------------------------------------------------------------------


def up(state: Path | str | None = None, prefect_port: int = 4200, dashboard_port: int = 8501, dashboard: bool = True,
       serve: bool = True, watch: bool = True, only: str | None = None, api_url: str | None = None,
       datacards: Path | None = None, data: Path | None = None, interval: float = 2.0,
       database: str = "sqlite", postgres_port: int = 54320, workers: int = 0, worker_limit: int | None = None,
       echo: Callable[[str], None] = print) -> dict:
    """Start the parts asked for; returns the stack record (also in <state>/stack.json)."""
    folder = state_dir(state)
    wanted = _wanted(only, serve, dashboard, watch, database, workers)
    stack = read_stack(folder) or {}
    parts = {name: part for name, part in (stack.get("parts") or {}).items() if part_running(part)}
    running = [name for name in parts if name in wanted or (name.startswith("worker-") and "workers" in wanted)]
    if running:
        raise StackError(f"already up: {', '.join(running)} (state {folder}); `medbuilder status` shows it, "
                         f"`medbuilder down{' --state ' + str(folder) if state else ''}` stops it")
    stack = {"state_dir": str(folder), "parts": parts, "api_url": stack.get("api_url") if "prefect" in parts else None,
             "started": stack.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S")}
    _check_ports(wanted, prefect_port, dashboard_port, postgres_port)
    needs_api = [p for p in wanted if p not in ("prefect", "postgres")]
    if needs_api and "prefect" not in wanted:
        stack["api_url"] = _existing_api(api_url or stack["api_url"], needs_api)
        if read_auth(folder) and not current_auth():
            os.environ[CLIENT_VARIABLE] = read_auth(folder)
    try:
        database_url = start_postgres(folder, postgres_port, stack, echo) if "postgres" in wanted else None
        if "prefect" in wanted:
            start_prefect(folder, prefect_port, stack, echo, database_url)
        if "serve" in wanted:
            start_serve(folder, stack["api_url"], stack, echo, dashboard_url(stack, wanted, dashboard_port))
        if "workers" in wanted:
            start_workers(folder, stack["api_url"], workers, worker_limit, stack, echo)
        if "dashboard" in wanted:
            start_dashboard(folder, stack["api_url"], dashboard_port, stack, echo)
        if "watch" in wanted:
            start_watch(folder, stack["api_url"], stack, echo, datacards, data, interval)
    except BaseException:
        for name in stop_order(stack["parts"]):
            if name not in parts:  # only what this call started
                stop_any(name, stack["parts"].pop(name), grace_s=5)
        write_stack(folder, stack) if stack["parts"] else (folder / STACK_FILE).unlink(missing_ok=True)
        raise
    stack["urls"] = urls(stack)
    write_stack(folder, stack)
    for line in describe(stack):
        echo(line)
    return stack


def _wanted(only: str | None, serve: bool, dashboard: bool, watch: bool, database: str, workers: int) -> list[str]:
    if only is not None and only not in ONLY_PARTS:
        raise StackError(f"--only {only!r}: choose one of {', '.join(ONLY_PARTS)}")
    if database not in DATABASES:
        raise StackError(f"--database {database!r}: choose one of {', '.join(DATABASES)}")
    if workers < 0:
        raise StackError(f"--workers {workers}: give 0 (no work pool) or more")
    if only:
        return ["postgres", "prefect"] if only == "prefect" and database == "postgres" else [only]
    flags = {"postgres": database == "postgres", "prefect": True, "serve": serve, "workers": workers > 0,
             "dashboard": dashboard, "watch": watch}
    return [p for p in PARTS if flags[p]]


def _check_ports(wanted: list[str], prefect_port: int, dashboard_port: int, postgres_port: int) -> None:
    if "postgres" in wanted and not port_free(postgres_port):
        raise StackError(f"port {postgres_port} (PostgreSQL) is in use: choose another with --postgres-port N")
    if "prefect" in wanted and not port_free(prefect_port):
        raise StackError(f"port {prefect_port} (Prefect server) is in use: choose another with --prefect-port N")
    if "dashboard" in wanted and DASHBOARD_APP.exists() and not port_free(dashboard_port):
        raise StackError(f"port {dashboard_port} (dashboard) is in use: choose another with --dashboard-port N")


def _existing_api(api_url: str | None, needs_api: list[str]) -> str:
    api_url = (api_url or os.environ.get("PREFECT_API_URL") or "").rstrip("/") or None
    if not api_url:
        raise StackError(f"{', '.join(needs_api)} need(s) a Prefect server: start one with `medbuilder up` "
                         "(or `--only prefect`), or set PREFECT_API_URL to your own server's API")
    if not server_healthy(api_url):
        raise StackError(f"the Prefect API {api_url} does not answer {api_url}/health: start the server first")
    return api_url


def urls(stack: dict) -> dict:
    out = {}
    parts = stack.get("parts", {})
    if "prefect" in parts:
        out["prefect_ui"] = parts["prefect"]["url"]
    if stack.get("api_url"):
        out["prefect_api"] = stack["api_url"]
    if "dashboard" in parts:
        out["dashboard"] = parts["dashboard"]["url"]
    return out


def describe(stack: dict) -> list[str]:
    lines = []
    names = {"prefect_ui": "Prefect UI", "prefect_api": "Prefect API", "dashboard": "dashboard"}
    for key, url in urls(stack).items():
        lines.append(f"{names[key]:12} {url}")
    postgres = stack.get("parts", {}).get("postgres")
    if postgres:
        lines.append(f"{'database':12} {postgres['url']} (data {postgres['data_dir']})")
    if stack.get("pool"):
        pool = stack["pool"]
        lines.append(f"{'work pool':12} {pool['name']}: {len(pool['workers'])} worker(s); submit with "
                     f"run_deployment(\"{pool['deployment']}\", parameters={{...}}, timeout=0)")
    if stack.get("training_limit"):
        limit = stack["training_limit"]
        lines.append(f"{'trainings':12} at most {limit['slots']} at a time (global concurrency limit {limit['name']})")
    if "prefect" in stack.get("parts", {}):
        lines.append(f"{'credentials':12} {auth_file(Path(stack['state_dir']))} (the API refuses calls without them; "
                     "medbuilder commands read them, other clients: export PREFECT_API_AUTH_STRING=\"$(cat FILE)\")")
    lines.append(f"{'state':12} {stack['state_dir']} (logs: <part>.log; `medbuilder down` stops it)")
    return lines


# --- down and status -------------------------------------------------------------------------------------

def down(state: Path | str | None = None, grace_s: float = 15.0, echo: Callable[[str], None] = print) -> list[int]:
    """Stop every part (reverse order: the runner pauses its schedules while the server still answers);
    returns pids still alive afterwards (empty when all is stopped)."""
    folder = state_dir(state)
    stack = read_stack(folder)
    if not stack:
        echo(f"nothing is up (no {folder / STACK_FILE})")
        return []
    left: list[int] = []
    for name in stop_order(stack["parts"]):
        part = stack["parts"][name]
        was = part_running(part)
        still = stop_any(name, part, grace_s, echo)
        left += still
        echo(f"{name}: {'stopped' if was else 'was not running'} (pid {part['pid']})"
             + (f"; still alive: {still}" if still else ""))
    if left:
        raise StackError(f"processes of the stack survived SIGKILL: {left}")
    (folder / STACK_FILE).unlink(missing_ok=True)
    return left


def stop_any(name: str, part: dict, grace_s: float = 15.0, echo: Callable[[str], None] = print) -> list[int]:
    """stop_part, except PostgreSQL, which gets a fast shutdown through pg_ctl first (signals are the fallback)."""
    if name == "postgres" and part_running(part):
        from medbuilder.stack import postgres

        try:
            postgres.stop(Path(part["data_dir"]), timeout=grace_s + 15)
        except (postgres.PostgresError, subprocess.TimeoutExpired) as err:
            echo(f"postgres: pg_ctl stop failed, signalling it instead: {err}")
    return stop_part(part, grace_s)


def status(state: Path | str | None = None) -> dict:
    """{part: {"up": bool, "pid", "url"...}} of the recorded stack ({} when nothing was started)."""
    folder = state_dir(state)
    stack = read_stack(folder)
    if not stack:
        return {}
    out = {}
    for name, part in stack["parts"].items():
        row = {"up": part_running(part), "pid": part["pid"], "log": part["log"]}
        if name == "prefect":
            row.update(url=part["url"], healthy=server_healthy(part["api_url"]))
        if name == "dashboard":
            row.update(url=part["url"], healthy=http_ok(f"{part['url']}/_stcore/health"))
        if name == "serve":
            row["healthy"] = row["up"] and deployments_ready(part["api_url"])
        if name == "postgres":
            row.update(url=part["url"], healthy=row["up"] and not port_free(part["port"]))
        if name.startswith("worker-"):
            row["healthy"] = row["up"] and workers_ready(part["api_url"], [part["worker"]], part["pool"])
        out[name] = row
    return out
