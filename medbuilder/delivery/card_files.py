"""The model card's files: ``model_card.md`` in the run folder and, once delivered, the bundle's docs/README.md."""

from __future__ import annotations

from medbuilder.delivery.model_card import render_card
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.review.compare import card_sections


def write_model_card(run: RunFolder, round_k: int) -> str:
    """Render round k's card with every reviewer section and write it where it is read; returns its text."""
    card = render_card(run.root, round_k, extra_sections=card_sections(run, round_k))
    (run.root / "model_card.md").write_text(card)
    docs = run.root / "bundle" / "docs"
    if docs.is_dir():
        (docs / "README.md").write_text(card)
    return card
