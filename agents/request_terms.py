"""What a plain-language request names: task, modality, anatomy, dimension.

Word lists, not a model: they are small, inspectable and testable. A term the
request does not name constrains nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TASK_WORDS = {
    "segmentation": ["segment", "segmentation", "delineate", "contour", "outline", "mask", "skull strip",
                     "skull-strip", "brain extraction", "voxel-wise", "pixel-wise", "label each voxel"],
    "anomaly_detection": ["anomaly", "anomalies", "anomalous", "outlier", "novelty", "normal-only",
                          "trained on normal", "unsupervised", "abnormality detection", "detect abnormal"],
    "report_generation": ["report", "reports", "caption", "write findings", "findings and impression",
                          "describe the image", "radiology text"],
    "diagnosis": ["classify", "classification", "classifier", "diagnose", "diagnosis", "diagnostic",
                  "detect", "detection", "predict whether", "tell whether", "tumour or no", "tumor or no",
                  "positive or negative", "presence of"],
}
MODALITY_WORDS = {
    "MRI": ["mri", "mr ", "magnetic resonance", "t1", "t2", "flair"],
    "CT": ["ct", "computed tomography", "cat scan"],
    "X-ray": ["x-ray", "xray", "x ray", "radiograph", "radiographs", "cxr", "chest film"],
    "fundus": ["fundus", "retina", "retinal"],
    "ultrasound": ["ultrasound", "sonograph", "echo"],
    "histology": ["histology", "histopathology", "whole slide", "h&e"],
}
ANATOMY_WORDS = {
    "brain": ["brain", "cerebral", "cranial", "neuro", "glioma", "meningioma", "skull"],
    "chest": ["chest", "lung", "lungs", "thorax", "thoracic", "pulmonary", "pneumothorax", "pneumonia",
              "pleural", "cardiomegaly"],
    "abdomen": ["abdomen", "abdominal", "liver", "kidney", "pancreas", "spleen"],
    "knee": ["knee", "menisc", "cruciate"],
    "spine": ["spine", "vertebra", "vertebrae"],
    "eye": ["eye", "retina", "fundus"],
}
FINDING_WORDS = {
    "tumour": ["tumour", "tumor", "tumours", "tumors", "glioma", "meningioma", "neoplasm"],
    "pneumothorax": ["pneumothorax", "collapsed lung"],
    "pneumonia": ["pneumonia", "consolidation"],
    "nodule": ["nodule", "nodules"],
    "effusion": ["effusion", "effusions"],
    "cardiomegaly": ["cardiomegaly", "enlarged heart"],
    "fracture": ["fracture", "fractures"],
    "covid": ["covid", "sars-cov-2"],
    "haemorrhage": ["haemorrhage", "hemorrhage", "bleed"],
    "stroke": ["stroke", "infarct"],
}
DIMENSION_WORDS = {
    "3D": ["3d", "3-d", "volume", "volumes", "volumetric", "whole scan", "whole-brain volume"],
    "2D": ["2d", "2-d", "slice", "slices", "radiograph", "image-level"],
}


def _found(text: str, words: dict[str, list[str]]) -> list[str]:
    hits = []
    for key, terms in words.items():
        if any(re.search(rf"(?<![a-z0-9]){re.escape(t.strip())}", text) for t in terms):
            hits.append(key)
    return hits


def _without_negated(text: str) -> str:
    """Drop clauses that say what the model must NOT use ("not rely on chest drains")."""
    return re.sub(r"(must not|should not|not rely|not look|without|instead of)[^.;]*", " ", text)


@dataclass
class RequestTerms:
    text: str
    tasks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    anatomies: list[str] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "RequestTerms":
        low = f" {text.lower()} "
        tasks = _found(low, TASK_WORDS)
        if "anomaly_detection" in tasks and "diagnosis" in tasks:
            tasks.remove("diagnosis")  # "detect anomalies" names one task, not two
        if "segmentation" in tasks and "diagnosis" in tasks and not re.search(r"classif|diagnos", low):
            tasks.remove("diagnosis")
        return cls(text, tasks, _found(low, MODALITY_WORDS), _found(low, ANATOMY_WORDS), _found(low, DIMENSION_WORDS),
                   _found(_without_negated(low), FINDING_WORDS))

    @property
    def task(self) -> str | None:
        """The one task the request asks for; a named finding with no task verb means diagnosis."""
        order = ["segmentation", "anomaly_detection", "report_generation", "diagnosis"]
        named = next((t for t in order if t in self.tasks), None)
        return named or ("diagnosis" if self.findings else None)
