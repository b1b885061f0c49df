"""`medbuilder bench` (the build cases against reference pipelines) and `medbuilder bench shortcut`:
measured figures, printed and written to a folder."""

from __future__ import annotations

from pathlib import Path

import typer

from medbuilder.bench.scale import DEFAULT_GENERATED, DEFAULT_SIZES
from medbuilder.cli.common import fail
from medbuilder.settings import get_settings

app = typer.Typer(help="Benchmarks that print measured figures. Without a subcommand: every build case through "
                       "the build_model flow, compared with a hand-written reference pipeline.",
                  invoke_without_command=True, no_args_is_help=False)


@app.callback()
def bench(
    ctx: typer.Context,
    core: str = typer.Option("offline", "--core", help="Agent core: offline or llm."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Runs per case."),
    cases: list[str] = typer.Option(None, "--cases", "--case",
                                    help="Only these cases (repeat the option or separate by commas); default all."),
    out: Path = typer.Option(Path("bench/all"), "--out", help="Folder for bench.json, bench.md and the figures."),
    quick: bool = typer.Option(False, "--quick", help="Smoke run: small subsets and a short training time limit."),
    epochs: int = typer.Option(None, "--epochs", min=1,
                               help="Every training runs this many epochs instead of the Model Trainer's choice."),
) -> None:
    """Run each case (task, dataset, request) through build_model with automatic approvals, then its reference
    pipeline (benchmarks/references/<task>.py); print completion, actions and debug iterations per role, the
    metric against the reference's, end-to-end / reference time and generated / reference images per second."""
    if ctx.invoked_subcommand is not None:
        return
    from medbuilder.bench.cases import CASES, select
    from medbuilder.bench.report import render, write
    from medbuilder.bench.run import run_bench

    if core not in ("offline", "llm"):
        fail(f"--core must be offline or llm, not {core!r}")
    try:
        chosen = select(cases)
    except ValueError as err:
        fail(str(err))
    typer.echo(f"cases: {', '.join(c.name for c in chosen)} (available: {', '.join(CASES)})"
               + ("; QUICK smoke run" if quick else ""))
    results = run_bench(chosen, core=core, repeats=repeats, quick=quick, echo=typer.echo, epochs=epochs)
    files = write(results, out)
    typer.echo(render(results))
    typer.echo(f"{results['seconds']:.0f} s; results in {files['json']} and {files['markdown']}")


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


@app.command()
def layouts(
    family: list[str] = typer.Option(None, "--family",
                                     help="Only these layout families (repeat the option or separate by commas); "
                                          "default all."),
    out: Path = typer.Option(Path("bench/layouts"), "--out",
                             help="Folder for layouts.json, layouts.md and the generated datasets (data/)."),
) -> None:
    """Generate each layout family (real images arranged as hospitals export them: class folders, label tables,
    DICOM, nnU-Net, MSD, BIDS, and bad variants), run the offline Data Engineer on it and score the index against
    the truth: correct, asked (the dataset gate has questions) or wrong; print the table and the totals."""
    from medbuilder.bench.layout_families import select
    from medbuilder.bench.layouts import render, run_layouts, write

    try:
        chosen = [spec.name for spec in select(family or None)]
    except ValueError as err:
        fail(str(err))
    rows = run_layouts(chosen, out / "data", echo=typer.echo)
    files = write(rows, out)
    typer.echo(render(rows))
    typer.echo(f"results in {files['json']} and {files['markdown']}; generated datasets in {out / 'data'}")


@app.command()
def scale(
    sizes: str = typer.Option(",".join(map(str, DEFAULT_SIZES)), "--sizes", help="Br35H images per point, comma-separated (n/2 per "
                                                                "class; 3000 means every laid-out image, 2,700)."),
    generated: str = typer.Option(",".join(map(str, DEFAULT_GENERATED)), "--generated",
                                  help="Images per GENERATED point, comma-separated (empty: none); drawn once, "
                                       "then reused."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Epochs every build trains, so points differ only in size."),
    out: Path = typer.Option(Path("bench/scale"), "--out", help="Folder for scale.json, scale.md, runs, data, logs."),
) -> None:
    """Build at each dataset size on a cold store (offline core, automatic approvals) and fill the store again on
    its own; print time and peak memory of both against the number of images, and how they grow."""
    from medbuilder.bench.scale import render, run_scale

    counts = {name: _counts(name, value) for name, value in (("--sizes", sizes), ("--generated", generated))}
    results = run_scale(counts["--sizes"], counts["--generated"], out, epochs, echo=typer.echo)
    typer.echo(render(results))
    typer.echo(f"{results['seconds']:.0f} s; results in {out / 'scale.json'} and {out / 'scale.md'}")


def _counts(option: str, value: str) -> list[int]:
    try:
        counts = [int(n) for n in value.split(",") if n.strip()]
    except ValueError:
        fail(f"{option} must be whole numbers separated by commas, not {value!r}")
    if any(n < 2 for n in counts):
        fail(f"{option}: every point needs at least 2 images (one per class)")
    return counts
