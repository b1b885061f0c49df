"""Delivery: the approved round as a MONAI bundle, its model card, and predictions from it.

API:
    render_card(run_root, round_k, extra_sections=None) -> str        markdown model card
    export_bundle(run_root, round_k, card_text) -> Path               runs/<id>/bundle/
    check_bundle(bundle) -> list[str]                                 missing files, schema problems
    validate_metadata(meta) -> None                                   MetadataError naming the field
    predict_run(run_root, files, output_dir=None, device=None) -> list[dict]
    load_bundle(bundle, output_dir=None, device=None) -> predictor    via monai.bundle.ConfigParser

The bundle tree is drawn in ``medbuilder.delivery.bundle``'s docstring.
"""

from medbuilder.delivery.bundle import BundleError, check_bundle, export_bundle
from medbuilder.delivery.metadata import MetadataError, validate_metadata
from medbuilder.delivery.model_card import render_card
from medbuilder.delivery.predict import BundleLoadError, NoBundleError, load_bundle, predict_run

__all__ = ["BundleError", "BundleLoadError", "MetadataError", "NoBundleError", "check_bundle", "export_bundle",
           "load_bundle", "predict_run", "render_card", "validate_metadata"]
