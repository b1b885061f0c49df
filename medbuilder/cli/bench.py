"""`medbuilder bench shortcut`: measured figures, printed and written to a folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medbuilder.cli.common import fail
from medbuilder.settings import get_settings

app = typer.Typer(help="Benchmarks that print measured figures.", no_args_is_help=True)


@app.command()
def shortcut(
    case: list[str] = typer.Option(["synth-cxr-drain", "br35h"], "--case",
                                   help="synth-cxr-drain (generated) and/or br35h (real); repeat the option."),
    out: Path = typer.Option(Path("bench/shortcut"), "--out", help="Folder for workspaces, shortcut.json and .md."),
    limit: int = typer.Option(None, "--limit", help="A small subset: at most N images per class (and split)."),
    epochs: int = typer.Option(None, "--epochs", help="Override each case's epochs (a quick look)."),
    strategy: list[str] = typer.Option(None, "--strategy", help="Only these strategies (besides the baseline)."),
) -> None:
    """Train the baseline and each refinement strategy per case; print the shortcut measures before/after."""
    from medbuilder.bench.shortcut import render, run_bench

    try:
        results = run_bench(case, out, get_settings().data_dir, limit, epochs, strategy or None, echo=typer.echo)
    except ValueError as err:
        fail(str(err))
    typer.echo(render(results))
    typer.echo(f"{results['seconds']:.0f} s; results in {out / 'shortcut.json'} and {out / 'shortcut.md'}")
