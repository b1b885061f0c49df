"""The Model Trainer's training keys: chosen from the data (size, dimension, class balance, independent
items) and adjusted for what made the last attempt fail. A tool (``choose_training``), so both cores reach it."""

from __future__ import annotations

from medbuilder.protocol.index import DataIndex
from medbuilder.protocol.templates import suggest_values
from medbuilder.review.clustered import independent_units

# Keys the Model Trainer chooses; the Module Architect leaves them at their defaults.
TRAINING_KEYS = {"epochs", "batch_size", "lr", "class_weights", "balanced_sampling", "time_limit_s", "val_fraction"}

MIN_GROUPS_FOR_VALIDATION = 1000


def distinct_groups(index: DataIndex) -> int:
    """Training items that are not copies of one another (patients, duplicate groups, else images)."""
    _, units = independent_units([{"patient_id": r.patient_id, "duplicate_group": r.duplicate_group}
                                  for r in index.train])
    return len(set(units.tolist()))


def choose_hyperparameters(task: str, index: DataIndex, dimension: str, adjust: list[str] | tuple = (),
                           time_limit_s: float | None = None, max_epochs: int | None = None,
                           epochs: int | None = None) -> tuple[dict, list[str]]:
    """Training keys from data size, dimension and class balance, adjusted for what made the last attempt fail
    (`adjust`: the kinds of its feedback, such as loss_not_finite or out_of_memory)."""
    suggested = suggest_values(task, index, dimension)
    chosen = {k: v for k, v in suggested.items() if k in TRAINING_KEYS}
    reasons = [f"epochs {chosen.get('epochs')} and batch size {chosen.get('batch_size')} for this data size and "
               f"dimension" + (", balanced class weights for the class imbalance" if "class_weights" in chosen else "")]
    groups = distinct_groups(index)
    if groups < MIN_GROUPS_FOR_VALIDATION:
        chosen["val_fraction"] = 0.0
        reasons.append(f"only {groups} distinct training items: train on all of them and keep the last epoch "
                       "rather than hold some out to pick an epoch")
    if time_limit_s:
        chosen["time_limit_s"] = float(time_limit_s)
    if epochs:
        chosen["epochs"] = int(epochs)
        reasons.append(f"epochs set to {epochs} (MEDBUILDER_TRAIN_EPOCHS)")
    if max_epochs and int(chosen.get("epochs", 0)) > max_epochs:
        chosen["epochs"] = int(max_epochs)
        reasons.append(f"epochs capped at {max_epochs} (MEDBUILDER_TRAIN_MAX_EPOCHS)")
    if "loss_not_finite" in adjust:
        chosen["lr"] = 0.0005
        reasons.append("the last loss was not finite: lower learning rate 5e-4")
    if "out_of_memory" in adjust:
        chosen["batch_size"] = max(1, int(chosen.get("batch_size", 8)) // 2)
        reasons.append("the last run ran out of memory: half the batch size")
    return chosen, reasons
