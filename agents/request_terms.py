"""What a plain-language request names: task, modality, anatomy, dimension, findings.

Word lists, not a model: they are small, inspectable and testable. A term the request does
not name constrains nothing. A German request is glossed into English first
(agents/request_language.py). When no task word is found, the task may still be read from the
request's meaning (agents/request_tasks.py, sentence embeddings against prototype sentences).

Task words come in two weights: a STRONG word names its task on its own ("segment",
"anomaly"); a WEAK word only leans towards it ("region", "abnormal", "detect"). The task with
the most weight wins, so "detect anomalies" is anomaly detection, not diagnosis, and "the
area of the effusion" is segmentation, not diagnosis of an effusion. A named finding with no
stronger task word means diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medbuilder.agents.request_language import detect_language, to_english

STRONG, WEAK = 2, 1
# When two tasks weigh the same, the first in this order wins.
TASK_ORDER = ["segmentation", "anomaly_detection", "report_generation", "diagnosis"]
TASK_WORDS: dict[str, dict[int, list[str]]] = {
    "segmentation": {
        STRONG: ["segment", "delineat", "contour", "outlin", "mask", "skull strip", "skull-strip", "skullstrip",
                 "brain extraction", "extract the brain", "voxel-wise", "voxelwise", "pixel-wise", "pixelwise",
                 "voxel-level", "pixel-level", "per-voxel", "per voxel", "per-pixel", "per pixel", "each voxel",
                 "every voxel", "each pixel", "every pixel", "the pixels of", "the voxels of", "label each voxel",
                 "boundary", "boundaries", "trace the"],
        WEAK: ["region of", "region", "area of", "shape", "where exactly", "isolate", "from the rest of", "paint",
               "mark", "map of", "draw", "tissue from"],
    },
    "anomaly_detection": {
        STRONG: ["anomal", "outlier", "novelty", "unsupervised", "normal-only", "only normal", "only have normal",
                 "only healthy", "only on normal", "only on healthy", "normal scans only", "healthy scans only",
                 "normal data", "normal examples", "trained on normal", "trained on healthy", "train on normal",
                 "train on healthy", "learning from normal", "learn from normal", "healthy controls", "deviat",
                 "unusual", "out of the ordinary", "atypical", "one-class", "one class", "abnormality score",
                 "how abnormal", "abnormality detection", "detect abnormal", "flag abnormal", "flag anything",
                 "looks off", "look like the healthy", "no disease labels", "no labelled disease",
                 "without labels", "unlabelled", "weird", "unexpected", "just normals", "normal anatomy",
                 "normal appearance", "what a normal"],
        WEAK: ["abnormal", "normals", "healthy scans", "healthy ones", "rare"],
    },
    "report_generation": {
        STRONG: ["report", "caption", "paragraph", "findings and impression", "impression", "free-text", "free text",
                 "radiology text", "image-to-text", "narrative", "dictat", "preliminary read", "written", "write up",
                 "write-up", "in words", "in sentences", "sentence", "describ", "descript", "summar", "compose",
                 "radiologist's note", "write findings", "write the findings", "draft"],
        WEAK: ["write", "text", "explain", "words", "radiologist"],
    },
    "diagnosis": {
        STRONG: ["classif", "diagnos", "predict whether", "tell whether", "tells me whether", "tell me if",
                 "tumour or no", "tumor or no", "positive or negative", "presence of", "is present", "yes or no",
                 "yes/no", "normal or abnormal", "is there", "are there", "does this", "does the", "which of these",
                 "probability of", "distinguish", "benign", "malignant", "grade", "triage", "sort", "label each",
                 "recognise which", "recognize which", "identify scans with", "report whether", "report if"],
        WEAK: ["detect", "identify", "which", "whether", "recogni", "spot", "screen", "present"],
    },
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
    "brain": ["brain", "cerebral", "cranial", "intracranial", "neuro", "glioma", "meningioma", "skull", "head"],
    "chest": ["chest", "lung", "lungs", "thorax", "thoracic", "pulmonary", "pneumothorax", "pneumonia",
              "pleural", "cardiomegaly", "cxr"],
    "abdomen": ["abdomen", "abdominal", "liver", "kidney", "pancreas", "spleen"],
    "knee": ["knee", "menisc", "cruciate"],
    "spine": ["spine", "vertebra", "vertebrae"],
    "eye": ["eye", "retina", "fundus"],
}
# One key per finding; the words are synonyms (matched as whole words, plural "s"/"es" allowed),
# so "tumour" in a request matches a card whose labels say "mass" or "lesion".
FINDING_WORDS = {
    "tumour": ["tumour", "tumor", "glioma", "meningioma", "glioblastoma", "neoplasm", "neoplasia", "mass",
               "lesion", "cancer", "carcinoma", "malignancy", "malignant", "metastasis", "metastases"],
    "pneumothorax": ["pneumothorax", "pneumothoraces", "collapsed lung", "ptx"],
    "pneumonia": ["pneumonia", "consolidation"],
    "nodule": ["nodule"],
    "effusion": ["effusion"],
    "cardiomegaly": ["cardiomegaly", "enlarged heart"],
    "fracture": ["fracture"],
    "covid": ["covid", "covid-19", "sars-cov-2"],
    "haemorrhage": ["haemorrhage", "hemorrhage", "bleed", "haematoma", "hematoma"],
    "stroke": ["stroke", "infarct", "infarction"],
    "retinopathy": ["retinopathy"],
    "meniscal tear": ["meniscal tear", "meniscus tear", "torn meniscus"],
}
DIMENSION_WORDS = {
    "3D": ["3d", "3-d", "volume", "volumes", "volumetric", "whole scan", "whole-brain volume"],
    "2D": ["2d", "2-d", "slice", "slices", "radiograph", "image-level"],
}


def _pattern(term: str, whole_word: bool) -> str:
    tail = r"(?:s|es)?(?![a-z])" if whole_word else ""
    return rf"(?<![a-z0-9]){re.escape(term.strip())}{tail}"


def _found(text: str, words: dict[str, list[str]], whole_word: bool = False) -> list[str]:
    """The keys of `words` with a term in `text` (a term matches at a word start; `whole_word`: to its end)."""
    return [key for key, terms in words.items() if any(re.search(_pattern(t, whole_word), text) for t in terms)]


def found_findings(text: str) -> list[str]:
    """The findings `text` names, by any of their synonyms."""
    return _found(f" {text.lower()} ", FINDING_WORDS, whole_word=True)


def _without_negated(text: str) -> str:
    """Drop clauses that say what the model must NOT use ("not rely on chest drains")."""
    return re.sub(r"(must not|should not|not rely|not look|without|instead of)[^.;]*", " ", text)


def task_weights(text: str, findings: list[str]) -> dict[str, int]:
    """Each task's weight of words in `text` (lower case, padded); a named finding leans to diagnosis."""
    weights = {task: sum(weight for weight, terms in tiers.items() for term in terms
                         if re.search(_pattern(term, False), text))
               for task, tiers in TASK_WORDS.items()}
    weights["diagnosis"] += WEAK if findings else 0
    return {task: w for task, w in weights.items() if w}


def _strongest(weights: dict[str, int]) -> list[str]:
    return sorted(weights, key=lambda t: (-weights[t], TASK_ORDER.index(t)))


@dataclass
class RequestTerms:
    text: str
    tasks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    anatomies: list[str] = field(default_factory=list)
    dimensions: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    language: str = "English"
    english: str = ""
    task_source: str | None = None  # "words", "meaning" (the embedding fallback) or None

    @classmethod
    def parse(cls, text: str, by_meaning: bool = True) -> "RequestTerms":
        """Read the request; `by_meaning`: when no task word is found, try the embedding fallback."""
        language = detect_language(text)
        english = to_english(text, language)
        low = f" {english.lower()} "
        findings = found_findings(_without_negated(low))
        tasks = _strongest(task_weights(low, findings))
        terms = cls(text, tasks, _found(low, MODALITY_WORDS), _found(low, ANATOMY_WORDS),
                    _found(low, DIMENSION_WORDS), findings, language, english, "words" if tasks else None)
        if not tasks and by_meaning:
            from medbuilder.agents.request_tasks import task_by_meaning

            meant = task_by_meaning(english)
            if meant:
                terms.tasks, terms.task_source = [meant], "meaning"
        return terms

    @property
    def task(self) -> str | None:
        """The one task the request asks for: the one its words weigh most towards."""
        return self.tasks[0] if self.tasks else None

    @property
    def anchored(self) -> bool:
        """Whether the request names anything a datacard can be checked against besides the task."""
        return bool(self.modalities or self.anatomies or self.findings)
