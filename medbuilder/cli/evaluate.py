"""`medbuilder evaluate RUN --dataset NAME`: validate a delivered model on another datacard's images."""

from __future__ import annotations

import logging

import typer

from medbuilder.cli.common import fail
from medbuilder.cli.runs import find_run

log = logging.getLogger(__name__)


def evaluate(
    run: str = typer.Argument(..., help="Run id or run folder with a delivered model."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Datacard of the external set (`medbuilder datacards list`)."),
    label_map: list[str] = typer.Option([], "--label-map", "-m", help="EXTERNAL=MODEL, once per label whose name "
                                        "differs from the model's class (e.g. --label-map tumour=yes)."),
) -> None:
    """External validation: the delivered bundle on another datacard's images; writes runs/<id>/external/NAME/."""
    from medbuilder.delivery.predict import NoBundleError
    from medbuilder.review.external_data import ExternalDataError, parse_label_map
    from medbuilder.review.external_report import headline
    from medbuilder.stages.external import validate_external

    folder = find_run(run)
    try:
        result = validate_external(folder, dataset, parse_label_map(label_map))
    except (ExternalDataError, NoBundleError, FileNotFoundError) as err:
        fail(str(err))
    except Exception as err:  # the user gets the reason; the traceback goes to the log
        log.exception("external validation of %s on %s failed", folder.run_id, dataset)
        fail(f"external validation stopped ({type(err).__name__}: {err}); what it wrote is kept in "
             f"{folder.root / 'external' / dataset}")
    internal = result.get("internal") or {}
    typer.echo(headline(result))
    typer.echo(f"internal test: {internal.get('value')} (95% CI {internal.get('ci95')}); "
               f"{len(result['set_aside'])} image(s) set aside")
    typer.echo(f"report: {folder.root / 'external' / dataset / 'external_validation.md'}")
