"""The `medbuilder` command: one subcommand per operation, `--help` on each."""

from __future__ import annotations

import os

# Before Prefect is imported: no telemetry (no network here), and room for the
# temporary local server to start on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
from medbuilder.stack.auth import load_for_commands  # noqa: E402

load_for_commands()  # a server started by `medbuilder up` refuses calls without its credentials

import typer  # noqa: E402

from medbuilder.cli import bench, build, cache, data, datacards, evaluate, llm, stack, template  # noqa: E402

app = typer.Typer(
    help="Build, evaluate and explain medical-imaging models from a plain-language request.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(datacards.app, name="datacards")
app.add_typer(data.app, name="data")
app.add_typer(template.app, name="template")
app.add_typer(bench.app, name="bench")
app.add_typer(llm.app, name="llm")
app.add_typer(cache.app, name="cache")
app.command("build")(build.build)
app.command("resume")(build.resume)
app.command("approve")(build.approve_gate)
app.command("stage")(build.stage)
app.command("predict")(build.predict)
app.command("evaluate")(evaluate.evaluate)
app.command("runs")(build.runs)
app.command("up")(stack.up)
app.command("down")(stack.down)
app.command("status")(stack.status)
app.command("watch")(stack.watch)


def main() -> None:
    app()
