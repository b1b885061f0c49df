"""Which language a request is written in, and German read as English.

The offline core's word lists and its sentence-embedding model (all-MiniLM-L6-v2) are English.
A German request is glossed word by word into English first (compounds split by known stems),
so the same word lists read it. Any other language is only named, cheaply, from its script or
its most common words, so the plan can say what to do instead of "no dataset fits". No model,
no download: lists of words as data.
"""

from __future__ import annotations

import re

READ_LANGUAGES = ("English", "German")  # what the word lists below and the glossary read

# A script that is not Latin names the language outright (kana before Han: Japanese mixes both).
SCRIPTS: list[tuple[str, str]] = [
    ("Japanese", "\u3040-\u30ff"),
    ("Korean", "\uac00-\ud7af\u1100-\u11ff"),
    ("Chinese", "\u4e00-\u9fff"),
    ("Russian", "\u0400-\u04ff"),
    ("Greek", "\u0370-\u03ff"),
    ("Arabic", "\u0600-\u06ff"),
    ("Hebrew", "\u0590-\u05ff"),
    ("Hindi", "\u0900-\u097f"),
    ("Thai", "\u0e00-\u0e7f"),
]

# Common words that are rare in the other languages listed (shared words such as "in" are left out).
STOP_WORDS: dict[str, set[str]] = {
    "English": set("the a an of and is are to for with each every this these that on as or from which whether my i "
                   "we it me be have has not no can should must will into per by at all only what where how there "
                   "please want need like would you your our their its".split()),
    "German": set("der die das dem den des ein eine einen einem einer eines und oder kein keine keinen nicht ohne "
                  "mit für auf im als ob jede jedes jeden jeder alle nur ist sind bitte sie ich wir soll sollte "
                  "muss darf werden wird zwischen bei vom zum zur".split()),
    "French": set("le la les des du une et est pour dans sur avec ou pas que qui chaque ces cette au aux je nous "
                  "vous sont être selon".split()),
    "Spanish": set("el los las del y es una para con por que cada sin según entre hay".split()),
    "Italian": set("il lo gli della delle dei degli di è una per con che ogni senza oppure".split()),
    "Portuguese": set("os da das do dos é uma um para com em que cada sem não ou".split()),
    "Dutch": set("het een en van voor met op niet elke dat zijn ik wij deze".split()),
}
ACCENTS: dict[str, str] = {"German": "äöüß", "French": "àâçèêëîïôûùœ", "Spanish": "ñ¿¡", "Portuguese": "ãõ"}

# German words the offline core knows, as English. Stems match inside compounds
# ("Thoraxröntgenbild" -> chest x-ray image); longer stems win.
GERMAN_STEMS: dict[str, str] = {
    # tasks
    "klassifizier": "classify", "klassifikation": "classification", "einstuf": "classify", "einteil": "classify",
    "unterscheid": "distinguish", "diagnostizier": "diagnose", "diagnose": "diagnosis", "erkenn": "detect",
    "detektier": "detect", "entdeck": "detect", "vorhersag": "predict", "segmentier": "segment",
    "umrand": "outline", "umreiß": "outline", "umreiss": "outline", "abgrenz": "delineate", "kontur": "contour",
    "maske": "mask", "extraktion": "extraction", "anomali": "anomaly", "anomal": "anomalous",
    "ausreißer": "outlier", "ausreisser": "outlier", "abweich": "deviation", "auffällig": "unusual",
    "befundbericht": "report", "bericht": "report", "befund": "findings", "beschreib": "describe",
    "schreib": "write", "erstell": "generate", "erzeug": "generate", "trainier": "train", "lern": "learn",
    "gesund": "healthy", "modell": "model", "vorhanden": "present",
    "wahrscheinlichkeit": "probability",
    # modalities and dimension
    "mrt": "mri", "kernspin": "mri", "röntgen": "x-ray", "roentgen": "x-ray", "ultraschall": "ultrasound",
    "netzhaut": "retina", "augenhintergrund": "fundus", "aufnahme": "image", "bild": "image",
    "schicht": "slice", "volumen": "volume",
    # anatomy
    "gehirn": "brain", "hirn": "brain", "kopf": "head", "schädel": "skull", "lunge": "lung", "brustkorb": "chest",
    "brust": "chest", "thorax": "chest", "bauch": "abdomen", "leber": "liver", "niere": "kidney", "milz": "spleen",
    "knie": "knee", "wirbelsäule": "spine", "wirbel": "vertebra", "herz": "heart", "auge": "eye",
    # findings and confounders
    "tumor": "tumour", "geschwulst": "tumour", "krebs": "cancer", "raumforderung": "mass", "läsion": "lesion",
    "pneumothorax": "pneumothorax", "lungenkollaps": "collapsed lung", "lungenentzündung": "pneumonia",
    "rundherd": "nodule", "knoten": "nodule",
    "pleuraerguss": "pleural effusion", "erguss": "effusion", "kardiomegalie": "cardiomegaly",
    "herzvergrößerung": "enlarged heart", "fraktur": "fracture", "bruch": "fracture", "blutung": "haemorrhage",
    "schlaganfall": "stroke", "infarkt": "infarct", "drainage": "drain",
}
# Whole German words, read only in a request that looks German (several are English words too).
GERMAN_WORDS: dict[str, str] = {
    "der": "the", "die": "the", "das": "the", "dem": "the", "den": "the", "des": "of the", "ein": "a", "eine": "a",
    "einen": "a", "einem": "a", "einer": "a", "eines": "a", "und": "and", "oder": "or", "kein": "no",
    "keine": "no", "keinen": "no", "keiner": "no", "nicht": "not", "ohne": "without", "mit": "with", "für": "for",
    "auf": "on", "im": "in the", "aus": "from", "von": "of", "vom": "of the", "zu": "to", "zum": "to the",
    "zur": "to the", "als": "as", "ob": "whether", "jede": "each", "jedes": "each", "jeden": "each",
    "jeder": "each", "jedem": "each", "alle": "all", "nur": "only", "ist": "is", "sind": "are", "hat": "has",
    "haben": "have", "es": "it", "sie": "", "bitte": "please", "darf": "must", "dürfen": "must", "soll": "should",
    "sollte": "should", "muss": "must", "sich": "", "verlassen": "rely", "normalen": "normal",
    "finde": "find", "finden": "find", "zeigt": "shows", "zwischen": "between", "bei": "in", "pro": "per",
}
# Stems also found inside English words ("tumor", "masked", "gauge"): they say nothing about the language.
# (Checked against the WordPiece vocabulary of the shipped MiniLM model.)
ALSO_ENGLISH = {"tumor", "diagnose", "anomal", "anomali", "maske", "lunge", "auge", "herz", "drainage", "thorax",
                "pneumothorax", "modell"}
GERMAN_ONLY_STEMS = [s for s in GERMAN_STEMS if s not in ALSO_ENGLISH]
_STEMS_LONGEST_FIRST = sorted(GERMAN_STEMS, key=len, reverse=True)


def _script_language(text: str) -> str | None:
    """A language named by its script, when most letters are in it."""
    letters = [ch for ch in text if ch.isalpha()]
    for language, ranges in SCRIPTS:
        share = len(re.findall(f"[{ranges}]", text)) / max(len(letters), 1)
        if share >= 0.3 or (language == "Japanese" and share > 0):
            return language
    return None


def _looks_german(token: str) -> bool:
    return any(stem in token for stem in GERMAN_ONLY_STEMS)


def _word_scores(text: str) -> dict[str, int]:
    tokens = re.findall(r"[^\W\d_]+", text.lower())
    scores = {language: sum(t in words for t in tokens) for language, words in STOP_WORDS.items()}
    for language, accents in ACCENTS.items():
        scores[language] += sum(any(ch in accents for ch in t) for t in tokens)
    scores["German"] += sum(_looks_german(t) for t in tokens)
    return scores


def detect_language(text: str) -> str:
    """The request's language by script, else by counts of common words; English when nothing says otherwise."""
    by_script = _script_language(text)
    if by_script:
        return by_script
    scores = _word_scores(text)
    best = max((lang for lang in scores if lang != "English"), key=lambda lang: scores[lang])
    return best if scores[best] >= 1 and scores[best] > scores["English"] else "English"


def _gloss_token(token: str, german: bool) -> str:
    low = token.lower()
    if german and low in GERMAN_WORDS:
        return GERMAN_WORDS[low]
    if not german and not _looks_german(low):
        return token
    found: list[tuple[int, str]] = []
    taken = [False] * len(low)
    for stem in _STEMS_LONGEST_FIRST:
        start = low.find(stem)
        if start >= 0 and not any(taken[start:start + len(stem)]):
            taken[start:start + len(stem)] = [True] * len(stem)
            found.append((start, GERMAN_STEMS[stem]))
    return " ".join(gloss for _, gloss in sorted(found)) if found else token


def to_english(text: str, language: str | None = None) -> str:
    """A German request glossed into English words. In other text only words that are German for sure
    ("Klassifiziere brain MRI ...") are glossed; the rest comes back unchanged."""
    german = (language or detect_language(text)) == "German"
    glossed = re.sub(r"[^\W\d_]+", lambda m: _gloss_token(m.group(0), german), text)
    return re.sub(r"  +", " ", glossed) if german else glossed


def unread_language_reason(language: str) -> str:
    """The one sentence a plan gives when the offline core cannot read the request's language."""
    return f"the offline core reads English (and German); this request looks like {language}: " \
           "write it in English, or use --core llm"
