"""External validation of a delivered model (``medbuilder evaluate``): the report, then the card again."""

from __future__ import annotations

from medbuilder.protocol.run_folder import RunFolder


def validate_external(run: RunFolder, dataset: str, label_map: dict[str, str] | None = None, settings=None) -> dict:
    """Validate the delivered model on datacard `dataset`; the model card and the bundle's copy gain the section."""
    from medbuilder.delivery.card_files import write_model_card
    from medbuilder.review.external import evaluate_external

    result = evaluate_external(run, dataset, label_map, settings)
    write_model_card(run, result["round"])
    return result
