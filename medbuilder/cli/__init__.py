"""The `medbuilder` command: one subcommand per operation, `--help` on each."""

from __future__ import annotations

import typer

from medbuilder.cli import data, datacards, template

app = typer.Typer(
    help="Build, evaluate and explain medical-imaging models from a plain-language request.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(datacards.app, name="datacards")
app.add_typer(data.app, name="data")
app.add_typer(template.app, name="template")


def main() -> None:
    app()
