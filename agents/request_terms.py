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
from medbuilder.agents.request_words import (ANATOMY_WORDS, DIMENSION_WORDS, FINDING_WORDS, MODALITY_WORDS,
                                             TASK_ORDER, TASK_WORDS, WEAK)

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
