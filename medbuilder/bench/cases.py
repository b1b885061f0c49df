"""The cases of `medbuilder bench`: (task, dataset, request), each run through the real `build_model` flow.

Full by default (the whole prepared dataset, the Model Trainer's own epochs); ``quick`` uses a
small subset (``quick_limit`` items per class or cases) and a short training time limit: a smoke
run whose figures say the bench works, not how well medbuilder does.
"""

from __future__ import annotations

from dataclasses import dataclass

# A case succeeds when its delivered metric is within this relative distance of the reference's.
SUCCESS_TOLERANCE = 0.05
QUICK_TRAIN_TIME_LIMIT_S = 8.0
# Training parity: the delivered training run at most this many times the reference's seconds on the same
# configuration and epochs, and its images per second at least this share of the reference loop's.
TRAINING_TARGET = 1.05
SPEED_TARGET = 0.95


@dataclass(frozen=True)
class Case:
    name: str
    task: str  # diagnosis, anomaly_detection, segmentation, report_generation
    dataset: str
    request: str
    provenance: str  # real / generated
    quick_limit: int  # `prepare --limit` for --quick


CASES: dict[str, Case] = {c.name: c for c in (
    Case("br35h-diagnosis", "diagnosis", "br35h", "Classify brain MRI slices as tumour or no tumour", "real", 10),
    Case("br35h-anomaly", "anomaly_detection", "br35h",
         "Detect anomalous brain MRI slices: train on normal scans only and flag tumours as anomalies", "real", 10),
    Case("brain-mask-3d", "segmentation", "brain-mask-3d", "Segment the brain in 3D T1-weighted MRI volumes",
         "real", 2),
    Case("synth-seg3d", "segmentation", "synth-seg3d", "Segment the spheres in the generated 3D volumes",
         "generated", 6),
    Case("synth-cxr-reports", "report_generation", "synth-cxr-reports",
         "Generate a radiology report for each chest radiograph", "generated", 8),
    Case("synth-cxr-drain", "diagnosis", "synth-cxr-drain",
         "detect pneumothorax; the model must not rely on chest drains", "generated", 10),
)}


def select(names: list[str] | None) -> list[Case]:
    """The named cases (all when none); accepts repeated and comma-separated names. ValueError lists the valid ones."""
    wanted = [n.strip() for name in (names or []) for n in name.split(",") if n.strip()]
    if not wanted:
        return list(CASES.values())
    unknown = [n for n in wanted if n not in CASES]
    if unknown:
        raise ValueError(f"unknown case {', '.join(unknown)}: use one of {', '.join(CASES)}")
    return [CASES[n] for n in dict.fromkeys(wanted)]


def relative_gap(value: float | None, reference: float | None) -> float | None:
    """|value - reference| / |reference| (None when either is missing or not finite, or the reference is 0)."""
    import math

    if value is None or reference is None or not math.isfinite(value) or not math.isfinite(reference) or reference == 0:
        return None
    return abs(value - reference) / abs(reference)


def succeeded(status: str, value: float | None, reference: float | None, tolerance: float = SUCCESS_TOLERANCE) -> bool:
    """A case succeeds when the flow delivered a model and its metric is within `tolerance` (relative) of the
    reference pipeline's metric, or better than it."""
    if status != "delivered" or value is None or reference is None:
        return False
    gap = relative_gap(value, reference)
    return value >= reference or (gap is not None and gap <= tolerance + 1e-9)
