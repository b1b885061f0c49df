"""Medical tool verify_report: keep FINDINGS and IMPRESSION of a radiology report, drop the noise.

Plain-text reports are split at section headers ("FINDINGS:", "IMPRESSION:" ...);
IU-Xray / Open-i XML reports are read from their <AbstractText Label=...> elements.
Noise removed: "XXXX" de-identification tokens, runs of separators (____, ----,
====, ****), control and replacement characters, repeated whitespace.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from medbuilder.protocol.tools.context import ToolError, Workspace

KEPT = {"FINDINGS": "FINDINGS", "FINDING": "FINDINGS", "IMPRESSION": "IMPRESSION", "IMPRESSIONS": "IMPRESSION",
        "CONCLUSION": "IMPRESSION", "CONCLUSIONS": "IMPRESSION"}
HEADERS = [*KEPT, "INDICATION", "INDICATIONS", "COMPARISON", "COMPARISONS", "HISTORY", "CLINICAL HISTORY",
           "TECHNIQUE", "EXAMINATION", "EXAM", "REASON FOR EXAM", "REASON FOR EXAMINATION", "PROCEDURE",
           "NOTIFICATION", "RECOMMENDATION", "RECOMMENDATIONS", "CLINICAL INFORMATION", "WET READ", "ADDENDUM"]
_HEADER = re.compile(
    r"(?:^|(?<=\n)|(?<=[.:;]\s))\s*(" + "|".join(sorted(map(re.escape, HEADERS), key=len, reverse=True)) + r")\s*:",
    re.IGNORECASE,
)
_DEID = re.compile(r"X{3,}-?|\bXX\b")
_SEPARATOR = re.compile(r"_{2,}|-{3,}|={3,}|\*{3,}|~{3,}|#{3,}")
_ODD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\u200b-\u200f\ufeff]")
MAX_REPORT_CHARS = 200_000


@dataclass
class ReportCheck:
    findings: str
    impression: str
    sections_found: list[str] = field(default_factory=list)
    sections_dropped: list[str] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [name for name, text in (("FINDINGS", self.findings), ("IMPRESSION", self.impression)) if not text]

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def cleaned_text(self) -> str:
        parts = [("FINDINGS", self.findings), ("IMPRESSION", self.impression)]
        return "\n".join(f"{name}: {text}" for name, text in parts if text)

    def as_text(self) -> str:
        lines = [
            "Report is " + ("complete" if self.ok else f"INCOMPLETE: missing or empty {', '.join(self.missing)}"),
            f"sections found: {', '.join(self.sections_found) or 'none (no headers such as FINDINGS: or IMPRESSION:)'}; "
            f"dropped: {', '.join(self.sections_dropped) or 'none'}",
            "removed: " + (", ".join(f"{n} {what}" for what, n in self.removed.items()) or "nothing"),
            "cleaned report:",
            self.cleaned_text or "(nothing left)",
        ]
        return "\n".join(lines)


def clean_text(text: str, removed: dict[str, int] | None = None) -> str:
    """`text` without de-identification tokens, separators, odd characters and extra whitespace."""
    removed = removed if removed is not None else {}
    for what, pattern in (("de-identification tokens", _DEID), ("separators", _SEPARATOR), ("odd characters", _ODD_CHARS)):
        text, count = pattern.subn(" ", text)
        removed[what] = removed.get(what, 0) + count
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,;:])", r"\1", text)
    text = re.sub(r"([.,;:])(?:\s*\1)+", r"\1", text)
    return text.strip(" ,;:")


def check_report(report: str) -> ReportCheck:
    """Split, clean and check one report (plain text or IU-Xray XML)."""
    sections = _xml_sections(report) if report.lstrip().startswith("<") else _text_sections(report)
    removed: dict[str, int] = {}
    kept: dict[str, list[str]] = {"FINDINGS": [], "IMPRESSION": []}
    found, dropped = [], []
    for name, body in sections:
        label = name.upper()
        found.append(label)
        if label in KEPT:
            cleaned = clean_text(body, removed)
            if cleaned:
                kept[KEPT[label]].append(cleaned)
        else:
            dropped.append(label)
    return ReportCheck(" ".join(kept["FINDINGS"]), " ".join(kept["IMPRESSION"]), found, dropped, removed)


def _text_sections(text: str) -> list[tuple[str, str]]:
    matches = list(_HEADER.finditer(text))
    sections = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections.append((" ".join(match.group(1).split()), text[match.end():end]))
    return sections


def _xml_sections(text: str) -> list[tuple[str, str]]:
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as err:
        raise ToolError(f"the report looks like XML but does not parse: {err}") from None
    return [(el.get("Label", "UNLABELLED"), "".join(el.itertext())) for el in root.iter("AbstractText")]


def verify_report(ctx: Workspace, text: str = "", path: str = "") -> ReportCheck:
    """Check and clean a radiology report: keep its FINDINGS and IMPRESSION, drop noise and other sections.

    Give the report either as text or as the path of a report file (plain text, or
    an IU-Xray / Open-i XML report). Headers are recognised case-insensitively
    (FINDINGS, IMPRESSION, CONCLUSION counts as IMPRESSION; INDICATION, COMPARISON,
    HISTORY, TECHNIQUE ... are dropped). Removed noise: XXXX de-identification
    tokens, separator runs such as ____ or ----, control and garbled characters,
    extra spaces. It says which sections were found, which were dropped, which of
    FINDINGS / IMPRESSION are missing or empty, and gives the cleaned report.

    Args:
        text: The report text. Leave empty when giving path.
        path: A report file to read instead of text.
    """
    if bool(text) == bool(path):
        raise ToolError("give exactly one of text (the report itself) or path (a report file)")
    if path:
        file = ctx.existing(path, kind="file")
        if file.stat().st_size > MAX_REPORT_CHARS:
            raise ToolError(f"'{path}' is {file.stat().st_size:,} bytes: not one report; preview it with preview_files")
        text = file.read_text(encoding="utf-8", errors="replace")
    return check_report(text)
