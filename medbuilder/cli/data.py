"""`medbuilder data list | prepare NAME [--to DIR | --from FOLDER] | replica NAME --to DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from medbuilder.cli.common import fail, registry
from medbuilder.protocol.registry import DatacardError
from medbuilder.settings import get_settings

app = typer.Typer(help="Lay out the shipped datasets, or point medbuilder at a public dataset you have.",
                  no_args_is_help=True)


@app.command("list")
def list_recipes() -> None:
    """Datasets that `data prepare` can lay out, and whether they are ready."""
    from medbuilder.protocol.datasets import RECIPES

    settings = get_settings()
    for name, card in sorted(registry().cards().items()):
        if card.prepare in RECIPES:
            ready = "prepared" if settings.resolve_data_path(card.path).is_dir() else "not prepared"
            typer.echo(f"{name:20} {card.provenance:9} {ready}")
    from medbuilder.protocol.public import templates

    typer.echo("\nPublic datasets (`medbuilder data prepare NAME --from FOLDER` points at your download):")
    for name, tpl in templates().items():
        typer.echo(f"{name:20} {tpl.title}")


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Dataset name, e.g. br35h (see `medbuilder data list`)."),
    to: Path = typer.Option(None, "--to", help="Target folder; default: the data folder / the card's path."),
    limit: int = typer.Option(None, "--limit", help="A small real subset: at most N items (per class where there are classes)."),
    source: Path = typer.Option(None, "--from", help="Public datasets: the folder your download is in (read, never "
                                                     "written)."),
    finding: str = typer.Option(None, "--finding", help="Multi-label public datasets: the finding the card asks "
                                                        "about (default: the template's)."),
) -> None:
    """Copy or derive dataset NAME into the data folder, or check a public dataset's download and install its card.

    The installed source, and the folder given with --from, are never modified."""
    from medbuilder.progress import steps
    from medbuilder.protocol.datasets import prepare as prepare_dataset
    from medbuilder.protocol.public import templates

    if source is not None or (name in templates() and name not in registry().cards()):
        return _install_public(name, source, finding, to)

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


def _install_public(name: str, source: Path | None, finding: str | None, to: Path | None) -> None:
    from medbuilder.progress import steps
    from medbuilder.protocol.public import PublicDatasetError, install, template

    try:
        tpl = template(name)
    except KeyError as err:
        fail(str(err).strip("'\""))
    if source is None:
        fail(f"'{name}' is a public dataset medbuilder does not ship: give the folder of your download with "
             f"--from FOLDER. The published layout: {tpl.published}")
    converted_to = (to or get_settings().data_dir / name) if tpl.data.get("convert") else None
    try:
        with steps(None, f"checking {source} against the published layout of {name}") as bar:
            installed = install(name, source, get_settings().datacards_dir, finding, converted_to,
                                on_item=lambda done, total: bar.update(done, total, f"converting {name}"))
    except PublicDatasetError as err:
        fail(str(err))
    report = installed.report
    typer.echo(f"{installed.card.name}: {report.records} of {report.images_found} images indexed"
               + (f"; per class: {report.per_class}" if any(report.per_class.values()) else "")
               + (f"; {report.unmatched} left out (e.g. {report.unmatched_examples[0].reason})" if report.unmatched else ""))
    typer.echo(f"datacard written to {installed.file}; build with it: medbuilder build --dataset {installed.card.name}")


@app.command()
def replica(
    name: str = typer.Argument(..., help="Public dataset name (see `medbuilder data list`)."),
    to: Path = typer.Option(..., "--to", help="A new folder for the replica."),
    finding: str = typer.Option(None, "--finding", help="Multi-label datasets: the finding the replica balances."),
) -> None:
    """Write a GENERATED miniature replica of a public dataset's published layout (noise images, for trying
    `data prepare NAME --from DIR` without the download)."""
    from medbuilder.protocol.public import PublicDatasetError
    from medbuilder.protocol.public.replicas import make_replica

    try:
        made = make_replica(name, to, finding)
    except (KeyError, FileExistsError, PublicDatasetError) as err:
        fail(str(err).strip("'\""))
    typer.echo(f"generated replica of {name} at {made.root} ({made.records} records; real label rows: "
               f"{made.real_rows or 'none'})")
