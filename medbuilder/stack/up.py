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
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from medbuilder import REPO_ROOT
from medbuilder.stack.auth import (CLIENT_VARIABLE, DEFAULT_STATE, SERVER_VARIABLE, STACK_FILE, auth_file, basic_header,
                                   current_auth, ensure_auth, read_auth)
from medbuilder.proctree import created
from medbuilder.stack.processes import launch, part_running, stop_part

PARTS = ("postgres", "prefect", "serve", "workers", "dashboard", "watch")  # start order; down goes backwards
ONLY_PARTS = ("prefect", "serve", "dashboard", "watch")
DATABASES = ("sqlite", "postgres")
DASHBOARD_APP = REPO_ROOT / "dashboards" / "app.py"
BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """Something the person can fix: the message says what and how."""


# --- processes -------------------------------------------------------------------------------------------

def rank(name: str) -> int:
    """Position of a part in the start order (worker-<k> parts sit at "workers")."""
    return PARTS.index("workers" if name.startswith("worker-") else name)


def stop_order(parts: dict) -> list[str]:
    return sorted(parts, key=rank, reverse=True)


# --- checks ----------------------------------------------------------------------------------------------

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


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def api_post(api_url: str, path: str, body: dict, timeout: float = 5.0):
    request = urllib.request.Request(f"{api_url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **basic_header()})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _tail(log: str, n: int = 2500) -> str:
    try:
        return Path(log).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_until(proc: subprocess.Popen, info: dict, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} before it was ready; its log "
                             f"({info['log']}) ends:\n{_tail(info['log'])}")
        time.sleep(0.5)
    raise StackError(f"{what} was not ready after {timeout_s:.0f} s; its log ({info['log']}) ends:\n{_tail(info['log'])}")


def deployments_ready(api_url: str) -> bool:
    """All three deployments and the trigger's automation exist on the server."""
    from medbuilder.flows.deployments import DEPLOYMENT_NAMES, TRIGGER_NAME

    try:
        found = api_post(api_url, "/deployments/filter", {"limit": 200})
        flows = {f["id"]: f["name"] for f in api_post(api_url, "/flows/filter", {"limit": 200})}
        names = {f"{flows.get(d['flow_id'])}/{d['name']}" for d in found}
        automations = {a["name"] for a in api_post(api_url, "/automations/filter", {"limit": 200})}
    except (OSError, ValueError):
        return False
    return set(DEPLOYMENT_NAMES) <= names and TRIGGER_NAME in automations


# --- state -----------------------------------------------------------------------------------------------

def state_dir(state: Path | str | None = None) -> Path:
    folder = Path(state or os.environ.get("MEDBUILDER_STACK_DIR") or DEFAULT_STATE).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# medbuilder up: processes, logs and the Prefect database; nothing here goes to git\n*\n")
    return folder


def read_stack(state: Path) -> dict | None:
    file = state / STACK_FILE
    return json.loads(file.read_text()) if file.exists() else None


def write_stack(state: Path, stack: dict) -> None:
    tmp = state / f"{STACK_FILE}.tmp"
    tmp.write_text(json.dumps(stack, indent=1) + "\n")
    tmp.replace(state / STACK_FILE)


# --- up --------------------------------------------------------------------------------------------------

def _base_env(api_url: str | None) -> dict:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _start_postgres(state: Path, port: int, stack: dict, echo) -> str:
    """Start the private PostgreSQL cluster; returns Prefect's connection URL."""
    from medbuilder.stack import postgres

    try:
        cluster = postgres.start(state / "postgres", port)
    except postgres.PostgresError as err:
        raise StackError(str(err)) from err
    pid = cluster.pid
    stack["parts"]["postgres"] = {"pid": pid, "pgid": pid, "created": created(pid), "port": port, "url": cluster.url,
                                  "data_dir": str(cluster.data_dir), "log": str(cluster.data_dir / "server.log")}
    write_stack(state, stack)
    echo(f"postgres: up (pid {pid}, 127.0.0.1:{port}, data {cluster.data_dir})")
    return cluster.connection_url


def _start_prefect(state: Path, port: int, stack: dict, echo, database_url: str | None = None) -> None:
    home = state / "prefect"
    home.mkdir(exist_ok=True)
    auth = ensure_auth(state)
    os.environ[CLIENT_VARIABLE] = auth  # for every part started after the server, and this process's clients
    env = {**_base_env(None), SERVER_VARIABLE: auth, CLIENT_VARIABLE: auth, "PREFECT_HOME": str(home),
           "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    # a run waiting for a training slot asks again after at most this long (Prefect's default is 30 s)
    env.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "5")
    env.pop("PREFECT_API_URL", None)
    prefect = str(BIN / "prefect") if (BIN / "prefect").exists() else "prefect"
    proc, info = launch("prefect", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, state)
    api_url = f"http://127.0.0.1:{port}/api"
    info.update(port=port, url=f"http://127.0.0.1:{port}", api_url=api_url,
                database="postgres" if database_url else str(home / "prefect.db"))
    stack["parts"]["prefect"] = info
    write_stack(state, stack)
    echo(f"prefect: starting (pid {proc.pid}, log {info['log']})")
    wait_until(proc, info, lambda: http_ok(f"{api_url}/health"), 180, "the Prefect server")
    stack["api_url"] = api_url
    _training_limit(api_url, stack, echo)


def _training_limit(api_url: str, stack: dict, echo) -> None:
    from medbuilder.settings import get_settings
    from medbuilder.stack.pool import ensure_training_limit

    settings = get_settings()
    if not settings.training_limit:
        echo("training limit: off (MEDBUILDER_TRAINING_LIMIT is empty)")
        return
    ensure_training_limit(api_url, settings.training_limit, settings.training_slots)
    stack["training_limit"] = {"name": settings.training_limit, "slots": settings.training_slots}
    echo(f"training limit: {settings.training_limit}, {settings.training_slots} training(s) at a time "
         "(MEDBUILDER_TRAINING_SLOTS)")


def workers_ready(api_url: str, names: list[str], pool: str) -> bool:
    """Every named worker has sent a heartbeat to the pool."""
    try:
        found = api_post(api_url, f"/work_pools/{pool}/workers/filter", {"limit": 200})
    except (OSError, ValueError):
        return False
    return set(names) <= {w["name"] for w in found}


def _start_workers(state: Path, api_url: str, count: int, limit: int | None, stack: dict, echo) -> None:
    from medbuilder.stack.pool import POOL, POOL_DEPLOYMENT, deploy_to_pool, ensure_pool, worker_command

    ensure_pool(api_url)
    env = _base_env(api_url)
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")  # how often a worker asks for new flow runs
    prefect = str(BIN / "prefect") if (BIN / "prefect").exists() else "prefect"
    names, started = [], []
    stamp = time.strftime("%H%M%S")
    for k in range(1, count + 1):
        name = f"worker-{k}"
        proc, info = launch(name, worker_command(prefect, f"medbuilder-{stamp}-{k}", limit=limit), env, state)
        info.update(api_url=api_url, pool=POOL, worker=f"medbuilder-{stamp}-{k}", limit=limit)
        stack["parts"][name] = info
        names.append(info["worker"])
        started.append((proc, info))
        echo(f"{name}: starting (pid {proc.pid}, log {info['log']})")
    write_stack(state, stack)
    deploy_to_pool(api_url, os.getcwd())  # while the workers start (importing the flow takes seconds)
    echo(f"work pool: {POOL} (process), deployment {POOL_DEPLOYMENT}, working folder {os.getcwd()}")
    for proc, info in started:
        wait_until(proc, info, lambda: workers_ready(api_url, [info["worker"]], POOL), 120, f"worker {info['worker']}")
    stack["pool"] = {"name": POOL, "deployment": POOL_DEPLOYMENT, "workers": names, "limit": limit}


def _dashboard_url(stack: dict, wanted: list[str], port: int) -> str | None:
    """The dashboard's address for gate notifications: the stack's running dashboard, or the one this call starts."""
    if "dashboard" in stack["parts"]:
        return stack["parts"]["dashboard"]["url"]
    if "dashboard" in wanted and DASHBOARD_APP.exists():
        return f"http://127.0.0.1:{port}"
    return None


def _start_serve(state: Path, api_url: str, stack: dict, echo, dashboard_url: str | None = None) -> None:
    env = _base_env(api_url)
    if dashboard_url:  # linked in gate notifications (medbuilder/stack/notify.py); an explicit setting wins
        env.setdefault("MEDBUILDER_DASHBOARD_URL", dashboard_url)
    proc, info = launch("serve", [sys.executable, "-m", "medbuilder.flows.deployments"], env, state)
    info["api_url"] = api_url
    stack["parts"]["serve"] = info
    write_stack(state, stack)
    echo(f"serve: starting the deployments (pid {proc.pid}, log {info['log']})")
    wait_until(proc, info, lambda: deployments_ready(api_url), 180, "the deployments serve process")
    notes = [line for line in _tail(info["log"], 8000).splitlines() if line.startswith("gate notifications:")]
    if notes:
        echo(f"serve: {notes[-1]}")


def _start_dashboard(state: Path, api_url: str, port: int, stack: dict, echo) -> bool:
    if not DASHBOARD_APP.exists():
        echo(f"dashboard: skipped, {DASHBOARD_APP} does not exist yet")
        return False
    from medbuilder.dashboards import launch as dashboard_launch  # the flags (no Deploy button, no telemetry)

    cmd = dashboard_launch.command(port)
    proc, info = launch("dashboard", cmd, {**_base_env(api_url), **dashboard_launch.environment(state)}, state)
    info.update(port=port, url=f"http://127.0.0.1:{port}", api_url=api_url)
    stack["parts"]["dashboard"] = info
    write_stack(state, stack)
    echo(f"dashboard: starting (pid {proc.pid}, log {info['log']})")
    wait_until(proc, info, lambda: http_ok(f"http://127.0.0.1:{port}/_stcore/health"), 120, "the dashboard")
    return True


def _start_watch(state: Path, api_url: str, stack: dict, echo, datacards: Path | None, data: Path | None,
                 interval: float) -> None:
    from medbuilder.settings import get_settings

    datacards = Path(datacards or get_settings().datacards_dir).resolve()
    cmd = [sys.executable, "-m", "medbuilder.stack.watch", "--datacards", str(datacards), "--interval", str(interval)]
    if data:
        cmd += ["--data", str(Path(data).resolve())]
    proc, info = launch("watch", cmd, _base_env(api_url), state)
    info.update(api_url=api_url, datacards=str(datacards), data=data and str(Path(data).resolve()))
    stack["parts"]["watch"] = info
    write_stack(state, stack)
    echo(f"watch: starting (pid {proc.pid}, log {info['log']})")
    wait_until(proc, info, lambda: "watching " in _tail(info["log"], 4000), 120, "the datacard watcher")


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
        database_url = _start_postgres(folder, postgres_port, stack, echo) if "postgres" in wanted else None
        if "prefect" in wanted:
            _start_prefect(folder, prefect_port, stack, echo, database_url)
        if "serve" in wanted:
            _start_serve(folder, stack["api_url"], stack, echo, _dashboard_url(stack, wanted, dashboard_port))
        if "workers" in wanted:
            _start_workers(folder, stack["api_url"], workers, worker_limit, stack, echo)
        if "dashboard" in wanted:
            _start_dashboard(folder, stack["api_url"], dashboard_port, stack, echo)
        if "watch" in wanted:
            _start_watch(folder, stack["api_url"], stack, echo, datacards, data, interval)
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
    if not http_ok(f"{api_url}/health", timeout=5):
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
            row.update(url=part["url"], healthy=http_ok(f"{part['api_url']}/health"))
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
