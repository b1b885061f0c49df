"""deliver: the approved round as a MONAI bundle with its model card."""

from __future__ import annotations

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.stages.record import run_stage


def deliver_stage(run_dir: str, round_k: int) -> dict:
    from medbuilder.delivery.bundle import export_bundle
    from medbuilder.delivery.card_files import write_model_card

    run = RunFolder(run_dir)

    def work() -> dict:
        card = write_model_card(run, round_k)
        bundle = export_bundle(run.root, round_k, card)
        return {"bundle": str(bundle), "model_card": str(run.root / "model_card.md")}

    return run_stage(run, "deliver", work)
