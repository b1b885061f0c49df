"""`medbuilder datacards list | show NAME | validate [FILE] | draft FOLDER | add FILE`."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from medbuilder.cli.common import fail, registry
from medbuilder.protocol.registry import DatacardError, check_path, load_card
from medbuilder.settings import get_settings

app = typer.Typer(help="List, show, validate, draft and add datacards (one file per dataset).", no_args_is_help=True)


@app.command("list")
def list_cards() -> None:
    """One line per dataset: name, provenance, tasks, modality, dimension."""
    try:
        cards = registry().cards()
    except DatacardError as err:
        fail(str(err))
    for card in cards.values():
        typer.echo(f"{card.name:20} {card.provenance:9} {card.dimension} {card.modality:8} {card.tasks_text()}")


@app.command()
def show(name: str) -> None:
    """Print a datacard in full."""
    try:
        card = registry().get(name)
    except (KeyError, DatacardError) as err:
        fail(str(err).strip("'\""))
    typer.echo(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100))


@app.command()
def validate(
    files: list[Path] = typer.Argument(None, help="Datacard files; default: every card in the datacards folder."),
    require_data: bool = typer.Option(False, "--require-data", help="Also fail when a card's data is not prepared yet."),
) -> None:
    """Check datacards: schema, names unique, dataset folder present (or preparable)."""
    settings = get_settings()
    targets = files or registry().files()
    problems, seen = 0, {}
    for file in targets:
        try:
            card = load_card(file)
            if card.name in seen:
                raise DatacardError(file, "name", f"'{card.name}' is also used by {seen[card.name]}", "rename one of them")
            seen[card.name] = file
            note = check_path(card, file, settings.data_dir)
        except DatacardError as err:
            problems += 1
            typer.secho(f"FAIL {err}", fg=typer.colors.RED, err=True)
            continue
        if note and require_data:
            problems += 1
            typer.secho(f"FAIL {file}: field 'path': {note}", fg=typer.colors.RED, err=True)
        else:
            typer.echo(f"ok   {file}" + (f"  ({note})" if note else ""))
    if problems:
        raise typer.Exit(1)


@app.command()
def add(file: Path) -> None:
    """Validate FILE and copy it into the datacards folder (never overwrites a card)."""
    if not file.is_file():
        fail(f"{file} does not exist; give the path of a datacard YAML or JSON file")
    try:
        check_path(load_card(file), file, get_settings().data_dir)
        target = registry().add(file)
    except DatacardError as err:
        fail(str(err))
    typer.echo(f"added {target}")


@app.command()
def draft(
    folder: Path = typer.Argument(..., help="The dataset's root folder."),
    task: str = typer.Option(None, "--task", help="diagnosis, segmentation, anomaly_detection or report_generation; "
                                                  "default: guessed from the files."),
    name: str = typer.Option(None, "--name", help="The datacard's name (default: from the folder's name)."),
    out: Path = typer.Option(None, "--out", help="Where to write the draft (default: NAME.yaml here; never overwritten)."),
) -> None:
    """Write a draft datacard for FOLDER: the inferred layout, counts per class, formats, a modality guess from
    DICOM tags. Edit what it marks EDIT, then `medbuilder datacards add FILE`."""
    from medbuilder.agents.layout.draft import DraftError, draft_card
    from medbuilder.protocol.datacard import Task

    if task is not None and task not in [t.value for t in Task]:
        fail(f"--task {task!r}: use one of {', '.join(t.value for t in Task)}")
    try:
        card, questions = draft_card(folder, task, name)
    except DraftError as err:
        fail(str(err))
    target = out or Path(f"{card['name']}.yaml")
    if target.exists():
        fail(f"{target} exists; give another --out (a draft never overwrites a file)")
    notes = "".join(f"# QUESTION: {q}\n" for q in questions)
    header = ("# Draft datacard written by `medbuilder datacards draft`: edit every EDIT, check label_names and the\n"
              "# layout, then `medbuilder datacards add " + str(target) + "`.\n" + notes)
    target.write_text(header + yaml.dump(card, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100))
    typer.echo(f"wrote {target}: {card['tasks'][0]}, {card['dimension']}, labels {card['label_names']}")
    for question in questions:
        typer.echo(f"question: {question}")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line text (the description) as a YAML block, the way the shipped datacards are written."""


_BlockDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
