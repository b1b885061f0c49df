"""The non-agent stages: plain functions, and thin Prefect tasks over them."""

from __future__ import annotations

from prefect import task

from medbuilder.protocol.artifacts import RunFolder
from medbuilder.settings import get_settings
from medbuilder.tasks.stages import run_stage


def prepare_stage(run_dir: str, stage: str = "prepare_data") -> dict:
    """Lay the chosen dataset out when its datacard has a recipe and the folder is missing."""
    from medbuilder.protocol.datacard import Datacard
    from medbuilder.protocol.datasets import prepare
    from medbuilder.protocol.registry import card_file_of, check_dataset_folder, is_empty_folder

    run = RunFolder(run_dir)

    def work() -> dict:
        card = Datacard.model_validate(run.read_json("datacard.json"))
        settings = get_settings()
        root = settings.resolve_data_path(card.path)
        needed = bool(card.prepare) and (not root.is_dir() or is_empty_folder(root))
        if needed:
            prepare(card.prepare, root)
        check_dataset_folder(card, card_file_of(settings.datacards_dir, card.name), root, run.run_id)
        return {"root": str(root), "prepared": needed}

    return run_stage(run, stage, work)


def evaluate_stage(run_dir: str, round_k: int) -> dict:
    from medbuilder.review.evaluate import evaluate_round

    run = RunFolder(run_dir)
    return run_stage(run, f"evaluate-{round_k}", lambda: evaluate_round(run, round_k))


def deliver_stage(run_dir: str, round_k: int) -> dict:
    from medbuilder.delivery.bundle import export_bundle
    from medbuilder.delivery.model_card import render_card
    from medbuilder.review.compare import card_sections

    run = RunFolder(run_dir)

    def work() -> dict:
        card = render_card(run.root, round_k, extra_sections=card_sections(run, round_k))
        (run.root / "model_card.md").write_text(card)
        bundle = export_bundle(run.root, round_k, card)
        return {"bundle": str(bundle), "model_card": str(run.root / "model_card.md")}

    return run_stage(run, "deliver", work)


prepare_data = task(name="prepare_data", persist_result=False)(prepare_stage)
evaluate = task(name="evaluate", task_run_name="evaluate-round-{round_k}", persist_result=False)(evaluate_stage)
deliver = task(name="deliver", persist_result=False)(deliver_stage)
