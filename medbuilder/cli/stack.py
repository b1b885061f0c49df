"""`medbuilder up | down | status | watch`: run medbuilder as a service (Prefect server, deployments,
dashboard, datacard watcher). Also runnable alone: ``python -m medbuilder.cli.stack up ...``."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer

from medbuilder.cli.common import fail

STATE_HELP = "Where pids, logs and the Prefect database go (default .medbuilder/stack, or MEDBUILDER_STACK_DIR)."


class Database(str, Enum):
    sqlite = "sqlite"
    postgres = "postgres"


class Part(str, Enum):
    prefect = "prefect"
    serve = "serve"
    dashboard = "dashboard"
    watch = "watch"


def up(
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Port of the Prefect server (UI and API)."),
    dashboard_port: int = typer.Option(8501, "--dashboard-port", help="Port of the Streamlit dashboard."),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Do not start the dashboard."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Do not start the deployments serve process."),
    no_watch: bool = typer.Option(False, "--no-watch", help="Do not start the datacard watcher."),
    only: Part = typer.Option(None, "--only", help="Start only this part; serve, dashboard and watch use the "
                                                   "stack's server or PREFECT_API_URL (your own server)."),
    api_url: str = typer.Option(None, "--api-url", help="An existing Prefect API for serve/dashboard/watch "
                                                        "(default: the stack's server, else PREFECT_API_URL)."),
    datacards: Path = typer.Option(None, "--datacards", help="Folder the watcher polls (default: MEDBUILDER_DATACARDS_DIR)."),
    data: Path = typer.Option(None, "--data", help="Also watch this data folder (a changed dataset folder "
                                                   "counts as a change of its datacards)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between the watcher's polls."),
    database: Database = typer.Option(Database.sqlite, "--database", help="The Prefect server's database: SQLite in "
                                      "the state folder, or a private PostgreSQL on 127.0.0.1 (Debian's postgresql)."),
    postgres_port: int = typer.Option(54320, "--postgres-port", help="Port of that PostgreSQL."),
    workers: int = typer.Option(0, "--workers", help="Also start N workers of the process work pool "
                                "medbuilder-process, with the deployment build_model/pool."),
    worker_limit: int = typer.Option(None, "--worker-limit", help="Flow runs one worker runs at a time (default: no limit)."),
) -> None:
    """Start the Prefect server (SQLite in the state folder, or PostgreSQL), the deployments, the work pool's
    workers (--workers N), the dashboard and the datacard watcher, each as its own process; print their URLs.
    The server gets the global concurrency limit on training (MEDBUILDER_TRAINING_SLOTS, default 1)."""
    from medbuilder.stack.up import StackError
    from medbuilder.stack.up import up as start

    try:
        start(state, prefect_port=prefect_port, dashboard_port=dashboard_port, dashboard=not no_dashboard,
              serve=not no_serve, watch=not no_watch, only=only and only.value, api_url=api_url,
              datacards=datacards, data=data, interval=interval, database=database.value,
              postgres_port=postgres_port, workers=workers, worker_limit=worker_limit, echo=typer.echo)
    except StackError as err:
        fail(str(err))


def down(
    state: Path = typer.Option(None, "--state", help=STATE_HELP),
    grace: float = typer.Option(15.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop every process `medbuilder up` started (and the flow runs they started)."""
    from medbuilder.stack.up import StackError
    from medbuilder.stack.up import down as stop

    try:
        stop(state, grace_s=grace, echo=typer.echo)
    except StackError as err:
        fail(str(err))


def status(state: Path = typer.Option(None, "--state", help=STATE_HELP)) -> None:
    """What `medbuilder up` started, and whether each part is up."""
    from medbuilder.stack.up import read_stack, state_dir
    from medbuilder.stack.up import status as read_status

    rows = read_status(state)
    if not rows:
        typer.echo(f"nothing is up (no stack.json in {state_dir(state)})")
        raise typer.Exit(1)
    stack = read_stack(state_dir(state)) or {}
    for name, row in rows.items():
        health = "" if "healthy" not in row else (" healthy" if row["healthy"] else " NOT answering")
        url = f"  {row['url']}" if row.get("url") else ""
        typer.echo(f"{name:10} {'up' if row['up'] else 'DOWN':5} pid {row['pid']:<8}{health}{url}  log {row['log']}")
    if stack.get("api_url"):
        typer.echo(f"{'api':10} {stack['api_url']}")
    if not all(row["up"] for row in rows.values()):
        raise typer.Exit(1)


def watch(
    datacards: Path = typer.Option(None, "--datacards", help="Folder of datacards (default: MEDBUILDER_DATACARDS_DIR)."),
    data: Path = typer.Option(None, "--data", help="Also watch this data folder."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between polls."),
) -> None:
    """Poll the datacards folder and emit `medbuilder.datacard.changed` (to PREFECT_API_URL) for each new or
    changed datacard; the deployment build_model/on-datacard runs on it."""
    from medbuilder.settings import get_settings
    from medbuilder.stack.watch import watch as run_watch

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("warning: PREFECT_API_URL is not set: events go to a temporary local server no trigger listens to; "
                   "set it to the server of `medbuilder up` (printed there)", err=True)
    try:
        run_watch(datacards or get_settings().datacards_dir, data, interval,
                  echo=lambda line: typer.echo(line))
    except KeyboardInterrupt:
        pass


app = typer.Typer(help="Run medbuilder as a service.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
app.command("up")(up)
app.command("down")(down)
app.command("status")(status)
app.command("watch")(watch)

if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    app()
