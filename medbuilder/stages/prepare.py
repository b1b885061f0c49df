"""prepare_data: lay the chosen dataset out when its datacard has a recipe and the folder is missing."""

from __future__ import annotations

from medbuilder.protocol.run_folder import RunFolder
from medbuilder.stages.record import run_stage


def prepare_stage(run_dir: str, stage: str = "prepare_data") -> dict:
    from medbuilder.protocol.datasets import prepare
    from medbuilder.protocol.registry import card_file_of, check_dataset_folder, is_empty_folder
    from medbuilder.settings import get_settings

    run = RunFolder(run_dir)

    def work() -> dict:
        card, settings, root = run.datacard(), get_settings(), run.dataset_root
        needed = bool(card.prepare) and (not root.is_dir() or is_empty_folder(root))
        if needed:
            prepare(card.prepare, root)
        check_dataset_folder(card, card_file_of(settings.datacards_dir, card.name), root, run.run_id)
        return {"root": str(root), "prepared": needed}

    return run_stage(run, stage, work)
