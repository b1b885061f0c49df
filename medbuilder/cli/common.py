"""Small helpers shared by the CLI modules."""

from __future__ import annotations

import typer

from medbuilder.protocol.registry import Registry
from medbuilder.settings import get_settings


def registry() -> Registry:
    return Registry(get_settings().datacards_dir)


def fail(message: str) -> None:
    """Print an error for a person (what went wrong and the fix) and exit 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
