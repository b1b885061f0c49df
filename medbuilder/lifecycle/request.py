"""The clinician's request, checked before a run is opened for it."""

from __future__ import annotations

import re


class BadRequest(ValueError):
    """A request the flow cannot start from; the message says what to write instead."""


def check_request(text: str) -> str:
    cleaned = " ".join((text or "").split())
    if len(re.findall(r"[a-zA-Z]{2,}", cleaned)) < 3:
        raise BadRequest(f"the request {text!r} is empty or too short to act on: describe the model in a sentence, "
                         "e.g. \"Classify brain MRI slices as tumour or no tumour\"")
    return cleaned


def slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:4]) or "build"
