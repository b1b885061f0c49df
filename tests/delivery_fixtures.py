"""Tiny real runs for the delivery tests: a run folder with one trained, snapshotted round.

``make_run`` lays a shipped dataset out (``prepare`` with a small limit), writes the
reference index, the request, the datacard and the index report into a run folder,
fills the task's template with ``suggest_values`` (plus small overrides), trains it
for real for one epoch, snapshots round 0 and records an approval of the review gate.
"""

from __future__ import annotations

from pathlib import Path

from medbuilder import REPO_ROOT

REQUESTS = {
    "diagnosis": "Tell me whether a brain MRI slice shows a tumour.",
    "anomaly_detection": "Flag brain MRI slices that look unlike healthy ones.",
    "segmentation": "Outline the spheres in these volumes.",
    "report_generation": "Write a short report for each chest X-ray.",
}
SMALL = {"num_threads": 1, "bootstrap": 50, "epochs": 1, "device": "cpu"}  # 1 thread: runs train two at a time
# per task: dataset recipe, prepare limit, overrides that keep one epoch to seconds on 2 cores
SETUPS = {
    "diagnosis": ("br35h", 10, {"image_size": [64, 64], "batch_size": 8, "channels": [8, 16, 32, 64]}),
    "anomaly_detection": ("br35h", 10, {"image_size": [32, 32], "batch_size": 8, "channels": [8, 16, 32],
                                        "latent_dim": 16}),
    "segmentation": ("synth-seg3d", 5, {"spacing": [2.0, 2.0, 2.0], "patch_size": [32, 32, 32],
                                        "samples_per_image": 1, "channels": [8, 16, 32], "batch_size": 2,
                                        "sw_batch_size": 2}),
    "report_generation": ("synth-cxr-reports", 5, {"image_size": [64, 64], "batch_size": 8,
                                                   "encoder_channels": [8, 16, 32], "embed_dim": 16,
                                                   "hidden_dim": 32}),
}


def prepare_data(root: Path, task: str) -> Path:
    """The task's dataset laid out under ``root/data`` (idempotent; do it before training in parallel)."""
    from medbuilder.protocol.datasets import prepare

    recipe, limit, _ = SETUPS[task]
    return prepare(recipe, root / "data" / recipe, limit=limit, echo=lambda _: None)


def make_run(root: Path, task: str, train: bool = True):
    """A run folder under ``root/runs`` for ``task``, with round 0 trained and snapshotted."""
    from medbuilder.protocol.artifacts import GateDecision, Plan
    from medbuilder.protocol.checks import check_index
    from medbuilder.protocol.datasets import reference_index
    from medbuilder.protocol.registry import Registry
    from medbuilder.protocol.run_folder import RunFolder
    from medbuilder.protocol.templates import fill_template, run_training, suggest_values
    from medbuilder.review.evaluate import snapshot_round
    from medbuilder.review.metadata_audit import audit_run
    from medbuilder.review.verified_metric import METRIC as METRICS
    from medbuilder.review.verified_metric import fix_test_split

    recipe, _, overrides = SETUPS[task]
    data_root = prepare_data(root, task)
    index = reference_index(recipe, data_root, task)
    run = RunFolder(root / "runs" / f"run-{task}")
    run.root.mkdir(parents=True, exist_ok=True)
    card = Registry(REPO_ROOT / "datacards").get(recipe)
    run.write("request.json", {"text": REQUESTS[task], "dataset": recipe})
    run.write("datacard.json", card.model_dump(mode="json"))
    index.write(run.index_dir)
    run.write("index_report.json", check_index(run.index_dir, task, data_root, card.label_names))
    run.write("decisions/dataset-1.json", GateDecision(gate="dataset-1", action="approve", dataset=recipe,
                                                       who="dr test", via="auto"))
    run.write("plan.json", Plan(status="ok", request=REQUESTS[task], dataset=recipe, task=task,
                                dimension=card.dimension, metric=METRICS[task]))
    audit_run(run, task)  # as the flow does before the dataset gate
    fix_test_split(run)  # as the flow does when the dataset is approved
    if not train:
        return run, index
    values = {**suggest_values(task, index), **SMALL, **overrides, "index_dir": str(run.index_dir)}
    fill_template(task, run.workspace, values)
    run_training(run.workspace, timeout_s=300, echo=False)
    snapshot_round(run, 0)
    run.write("decisions/review-0.json", GateDecision(gate="review-0", action="approve", who="dr test", via="auto"))
    return run, index
