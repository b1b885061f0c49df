"""The task a request asks for, read from its meaning when its words name none.

A fallback only: RequestTerms.parse calls it when no task word matched. The request is
compared (all-MiniLM-L6-v2 sentence embeddings) with a few prototype sentences per task. The
words the lists already read (modality, anatomy, finding, dimension) are taken out of both
first: they say what is imaged, not what to do with it, and otherwise dominate the embedding.
The closest task is taken only when it is close enough (MIN_SIMILARITY), clearly closer than
the next (MIN_MARGIN) and closer than the NO_TASK sentences (greetings, a description of data),
so a request that names no task ("brain MRI", "hello") stays without one. The prototypes
and both limits were set from the first half of each task's list in
tests/request_paraphrases.py (at 0.4 / 0.03 the fallback alone reads 53 of those 88 requests
right and 2 wrong, and none of the no-task requests); `python benchmarks/request_recognition.py`
measures them on the held-out half.
"""

from __future__ import annotations

import re

import numpy as np

from medbuilder.agents.embeddings import embed, embed_fixed
from medbuilder.agents.request_language import STOP_WORDS
from medbuilder.agents.request_words import ANATOMY_WORDS, DIMENSION_WORDS, FINDING_WORDS, MODALITY_WORDS

PROTOTYPES: dict[str, list[str]] = {
    "diagnosis": [
        "classify each image as disease or no disease",
        "tell me whether the scan shows the finding, yes or no",
        "predict the diagnosis for each image",
        "which of these scans have the condition?",
        "is there a lesion on this scan?",
    ],
    "segmentation": [
        "outline the organ on each scan",
        "produce a mask of the structure on every image",
        "mark which pixels belong to the organ",
        "separate the brain from the rest of the head",
        "find the boundary of the region in each volume",
    ],
    "anomaly_detection": [
        "train on normal scans only and flag the abnormal ones",
        "flag the scans that look different from the healthy ones",
        "find unusual images without any disease labels",
        "score how abnormal each scan is compared with normal anatomy",
        "detect deviations from the normal appearance",
    ],
    "report_generation": [
        "write a radiology report for each image",
        "describe each x-ray in sentences as a radiologist would",
        "produce the findings and impression text for every image",
        "turn each image into a written summary",
        "generate a free-text read of each study",
    ],
}
# Sentences that ask for nothing: the closest prototype being one of these means "no task".
NO_TASK = [
    "hello, can you help me?", "I work at a hospital", "what can you do?", "here are some scans from our clinic",
    "thanks, that is all", "some images", "a folder of scans", "which datasets are available?",
]
MIN_SIMILARITY = 0.4
MIN_MARGIN = 0.03
_SUBJECT_TERMS = sorted({t.strip() for words in (MODALITY_WORDS, ANATOMY_WORDS, FINDING_WORDS, DIMENSION_WORDS)
                         for terms in words.values() for t in terms}, key=len, reverse=True)
_SUBJECT = re.compile("|".join(rf"(?<![a-z0-9]){re.escape(t)}[a-z-]*" for t in _SUBJECT_TERMS))


def action_words(text: str) -> str:
    """`text` without what is imaged (modality, anatomy, finding, dimension): what is asked of it."""
    return re.sub(r"\s+", " ", _SUBJECT.sub(" ", f" {text.lower()} ")).strip()


def _prototypes() -> tuple[list[str], np.ndarray]:
    groups = {**PROTOTYPES, "none": NO_TASK}
    names = [name for name, sentences in groups.items() for _ in sentences]
    return names, embed_fixed(tuple(action_words(s) for sentences in groups.values() for s in sentences))


def task_similarities(text: str) -> dict[str, float]:
    """Per task (and "none"), the similarity of `text`'s action words to its closest prototype sentence."""
    names, prototypes = _prototypes()
    sims = prototypes @ embed([action_words(text)])[0]
    return {name: float(max(s for n, s in zip(names, sims) if n == name)) for name in dict.fromkeys(names)}


def task_by_meaning(text: str) -> str | None:
    """The task whose prototypes `text` is clearly closest to, or None when none is close or clear."""
    if sum(w not in STOP_WORDS["English"] for w in re.findall(r"[a-z']+", action_words(text))) < 2:
        return None  # "brain MRI", "3D volumes of the head": nothing is asked
    sims = task_similarities(text)
    ranked = sorted(sims, key=sims.get, reverse=True)
    best, second = ranked[0], ranked[1]
    if best == "none" or sims[best] < MIN_SIMILARITY or sims[best] - sims[second] < MIN_MARGIN:
        return None
    return best
