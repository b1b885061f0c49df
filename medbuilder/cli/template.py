"""`medbuilder template list | train TASK --dataset NAME`: a template on a shipped dataset, no agents."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer

from medbuilder.cli.common import fail, registry
from medbuilder.protocol.registry import DatacardError
from medbuilder.settings import get_settings

app = typer.Typer(help="The code templates: list them, or train one on a dataset's reference split.", no_args_is_help=True)


@app.command("list")
def list_templates_cmd() -> None:
    """Each template: task, dimensions, metric and fillable keys."""
    from medbuilder.protocol.templates import list_templates

    for spec in list_templates():
        keys = ", ".join(k.name for k in spec.keys)
        typer.echo(f"{spec.task:18} {'/'.join(spec.dims):6} {spec.metric:6} keys: {keys}")


def _parse_overrides(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            fail(f"--set expects KEY=VALUE, got '{pair}'")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


@app.command()
def train(
    task: str = typer.Argument(..., help="diagnosis | segmentation | anomaly_detection | report_generation"),
    dataset: str = typer.Option(..., "--dataset", help="A prepared dataset, e.g. br35h."),
    workdir: Path = typer.Option(None, "--workdir", help="Default: runs/template-<task>-<dataset>-<time>."),
    dims: str = typer.Option(None, "--dims", help="2D or 3D; default: the dataset's dimension."),
    overrides: list[str] = typer.Option([], "--set", help="Template key, e.g. --set epochs=3 (repeatable)."),
) -> None:
    """Fill TASK's template from the dataset's reference split, train it, print the metric."""
    from medbuilder.protocol.datasets import reference_index
    from medbuilder.protocol.templates import fill_template, run_training, suggest_values

    settings = get_settings()
    try:
        card = registry().get(dataset)
    except (KeyError, DatacardError) as err:
        fail(str(err).strip("'\""))
    root = settings.resolve_data_path(card.path)
    if not root.is_dir():
        fail(f"{root} is missing: run `medbuilder data prepare {dataset}` first")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = workdir or settings.runs_dir / f"template-{task}-{dataset}-{stamp}"
    index = reference_index(card.prepare or card.name, root, task)
    index.write(workdir / "index")
    values = suggest_values(task, index, dims or card.dimension)
    values.update(_parse_overrides(overrides))
    values["index_dir"] = str((workdir / "index").resolve())
    fill_template(task, workdir / "workspace", values)
    metrics = run_training(workdir / "workspace")
    typer.echo(f"{task} on {dataset}: test {metrics['metric']} = {metrics['value']:.4f} "
               f"({interval_text(metrics.get('ci95'))}, n_test={metrics.get('n_test')}); files in {workdir}")


def interval_text(ci95) -> str:
    if not ci95 or None in ci95:
        return "no 95% CI: too few test cases"
    return f"95% CI {ci95[0]:.4f}-{ci95[1]:.4f}"
