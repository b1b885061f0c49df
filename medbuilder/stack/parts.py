"""Starting each part of the stack (``up.py`` says which and in what order): its command, its environment,
its entry in ``stack.json``, and the wait until it is ready (``ready.py``) or has exited, with its log's end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from medbuilder import REPO_ROOT
from medbuilder.proctree import created
from medbuilder.stack.auth import CLIENT_VARIABLE, SERVER_VARIABLE, ensure_auth
from medbuilder.stack.processes import launch
from medbuilder.stack.ready import deployments_ready, http_ok, server_healthy, workers_ready
from medbuilder.stack.state import StackError, write_stack

DASHBOARD_APP = REPO_ROOT / "dashboards" / "app.py"
BIN = Path(sys.executable).parent


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


def _base_env(api_url: str | None) -> dict:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_postgres(state: Path, port: int, stack: dict, echo) -> str:
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


def start_prefect(state: Path, port: int, stack: dict, echo, database_url: str | None = None) -> None:
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
    wait_until(proc, info, lambda: server_healthy(api_url), 180, "the Prefect server")
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


def start_workers(state: Path, api_url: str, count: int, limit: int | None, stack: dict, echo) -> None:
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


def dashboard_url(stack: dict, wanted: list[str], port: int) -> str | None:
    """The dashboard's address for gate notifications: the stack's running dashboard, or the one this call starts."""
    if "dashboard" in stack["parts"]:
        return stack["parts"]["dashboard"]["url"]
    if "dashboard" in wanted and DASHBOARD_APP.exists():
        return f"http://127.0.0.1:{port}"
    return None


def start_serve(state: Path, api_url: str, stack: dict, echo, dashboard_url: str | None = None) -> None:
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


def start_dashboard(state: Path, api_url: str, port: int, stack: dict, echo) -> bool:
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


def start_watch(state: Path, api_url: str, stack: dict, echo, datacards: Path | None, data: Path | None,
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
