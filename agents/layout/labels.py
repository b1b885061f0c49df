"""Read raw label values as the datacard's label names: exact names, synonyms, codes, polarity words.

A match has a strength: 3 the name itself or a synonym the datacard gives; 2 a synonym from
the lexicon below or a code the card's description defines ("M = mass"); 1 a guess (the
initials or first letters of a name, 0/1 as normal/abnormal). A guess is used, and the
dataset gate asks about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXACT, KNOWN, GUESS = 3, 2, 1
NEGATIONS = ("no", "non", "not", "without", "free of", "absence of", "absent")
# Groups of words that name the same finding; a value and a label in one group match.
SYNONYMS = [
    {"tumour", "tumor", "tumours", "tumors", "mass", "masses", "neoplasm", "lesion", "lesions", "cancer",
     "malignant", "malignancy", "carcinoma", "glioma", "growth"},
    {"pneumothorax", "ptx", "collapsed lung"},
    {"pneumonia", "consolidation", "infection"},
    {"effusion", "pleural effusion", "fluid"},
    {"nodule", "nodules", "lung nodule"},
    {"fracture", "fractures", "fx", "broken"},
    {"haemorrhage", "hemorrhage", "bleed", "bleeding", "ich"},
    {"stroke", "infarct", "infarction", "ischaemia", "ischemia"},
    {"covid", "covid-19", "covid19", "sars-cov-2", "coronavirus"},
    {"cardiomegaly", "enlarged heart"},
    {"brain", "brain mask", "brain tissue"},
    {"background", "bg"},
]
NORMAL_WORDS = {"normal", "no", "negative", "neg", "healthy", "control", "controls", "hc", "none", "clear",
                "unremarkable", "no finding", "nofinding", "absent", "false", "n", "nl", "wnl"}
ABNORMAL_WORDS = {"abnormal", "yes", "positive", "pos", "present", "true", "y", "disease", "diseased", "patient",
                  "patients", "case", "abnormality", "pathological", "pathology", "affected"}
CODE_PATTERNS = (
    r"['\"`]?(?P<code>[A-Za-z0-9]{1,8})['\"`]?\s*(?:=|:|->|→|means|stands for|is for|for)\s*['\"`]?(?P<what>[A-Za-z][A-Za-z \-]{1,30})",
    r"(?P<what>[A-Za-z][A-Za-z \-]{1,30}?)\s*\(\s*['\"`]?(?P<code>[A-Za-z0-9]{1,8})['\"`]?\s*\)",
)


def normalise(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower()).strip()


def _split_negation(text: str) -> tuple[bool, str]:
    words = normalise(text)
    for negation in NEGATIONS:
        if words.startswith(negation + " ") and len(words) > len(negation) + 1:
            return True, words[len(negation) + 1:]
    if words.endswith(" free") or words.endswith(" negative"):
        return True, words.rsplit(" ", 1)[0]
    return False, words


def _group_of(words: str) -> int | None:
    candidates = [words, words.rstrip("s"), words.replace("-", " ")]
    for i, group in enumerate(SYNONYMS):
        if any(c in group for c in candidates):
            return i
    return None


def _initials(name: str) -> str:
    return "".join(w[0] for w in normalise(name).split())


@dataclass
class Match:
    label: str
    strength: int
    how: str


class LabelMatcher:
    """Raw values -> label names, for one datacard (label names, its synonyms, codes in its description)."""

    def __init__(self, label_names: list[str], card_synonyms: dict[str, list[str]] | None = None,
                 description: str = ""):
        self.names = list(label_names)
        self.description = normalise(description)
        self.card_words = {normalise(w): n for n, words in (card_synonyms or {}).items() for w in words}
        self.normal = self._normal_label()
        self.codes = self._codes_from(description)

    def _codes_from(self, description: str) -> dict[str, str]:
        codes = {}
        for pattern in CODE_PATTERNS:
            for found in re.finditer(pattern, description):
                code, what = found["code"], found["what"].strip()
                for end in range(len(what.split()), 0, -1):  # "mass, and N" -> try "mass" first words
                    phrase = " ".join(what.split()[:end])
                    match = self._by_words(phrase)
                    if match and match.strength >= KNOWN and normalise(code) != normalise(match.label):
                        codes.setdefault(normalise(code), match.label)
                        break
        return codes

    def _normal_label(self) -> str | None:
        for name in self.names:
            negated, words = _split_negation(name)
            if negated or words in NORMAL_WORDS:
                return name
        return None

    def _abnormal_label(self) -> str | None:
        others = [n for n in self.names if n != self.normal]
        return others[0] if self.normal and len(others) == 1 else None

    def _by_words(self, value: str) -> Match | None:
        words = normalise(value)
        for name in self.names:
            if words == normalise(name):
                return Match(name, EXACT, "the label name")
        if words in self.card_words:
            return Match(self.card_words[words], EXACT, "a synonym the datacard gives")
        negated, core = _split_negation(value)
        group = _group_of(core)
        if group is not None:
            for name in self.names:
                name_negated, name_core = _split_negation(name)
                if name_negated == negated and _group_of(name_core) == group:
                    return Match(name, KNOWN, f"'{core}' and '{name_core}' name the same finding")
        if words in NORMAL_WORDS and self.normal:
            return Match(self.normal, KNOWN, "a word for normal")
        if negated and self.normal and group is None and self._abnormal_label():
            return None
        abnormal = self._abnormal_label()
        if words in ABNORMAL_WORDS and abnormal:
            return Match(abnormal, KNOWN, "a word for abnormal")
        if group is not None and abnormal and normalise(abnormal) in ABNORMAL_WORDS:
            if negated:
                return Match(self.normal, KNOWN, f"'{words}' is the absence of the finding")
            known = re.search(rf"(?<![a-z]){re.escape(core)}", self.description)
            return Match(abnormal, KNOWN if known else GUESS, f"'{core}' read as '{abnormal}' (the finding)")
        return None

    def match(self, value: str) -> Match | None:
        """The label `value` stands for, or None."""
        found = self._by_words(value)
        if found:
            return found
        key = normalise(value)
        if key in self.codes:
            return Match(self.codes[key], KNOWN, "a code the datacard's description defines")
        return self._guess(key)

    def _guess(self, key: str) -> Match | None:
        if key in ("0", "1") and self.normal and self._abnormal_label():
            return Match(self.normal if key == "0" else self._abnormal_label(), GUESS, "0 read as normal, 1 as abnormal")
        if not key.isalpha():
            return None
        hits = [n for n in self.names if _initials(n) == key]
        if len(hits) != 1 and len(key) == 1:
            firsts = [n for n in self.names if normalise(n).startswith(key)]
            hits = firsts if len(firsts) == 1 else hits
        if len(hits) != 1 and len(key) >= 2:
            hits = [n for n in self.names if normalise(n).replace(" ", "").startswith(key)]
        if len(hits) == 1:
            return Match(hits[0], GUESS, f"'{key}' read as the first letters of '{hits[0]}'")
        return None

    def mapping(self, values: list[str]) -> tuple[dict[str, str], int, list[str]]:
        """For distinct raw values: the label_map entries needed, the weakest strength, and unmatched values.

        Without label names every value is its own class (a datacard draft): the strength is then GUESS.
        """
        entries, weakest, unmatched = {}, EXACT, []
        for value in dict.fromkeys(values):
            if not self.names:
                weakest = GUESS
                continue
            found = self.match(value)
            if found is None:
                unmatched.append(value)
                continue
            weakest = min(weakest, found.strength)
            if normalise(value) != normalise(found.label):
                entries[value] = found.label
        return entries, weakest, unmatched

    def explain(self, value: str) -> str:
        found = self.match(value)
        return f"'{value}' -> '{found.label}' ({found.how})" if found else f"'{value}' -> no label"
