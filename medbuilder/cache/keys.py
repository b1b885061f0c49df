"""The store's keys: a chain key names one preprocessing (medbuilder's template code and the configuration
keys its deterministic transforms read), an item key one item's files through it (their contents)."""

from __future__ import annotations

import hashlib
import json
from functools import cache


@cache
def code_digest(task: str) -> str:
    from medbuilder.review.trusted_code import template_code

    files = sorted(template_code(task).items())
    return hashlib.sha256(b"".join(name.encode() + b"\0" + data for name, data in files)).hexdigest()


def chain_key(task: str, cfg: dict, keys, kind: str) -> str:
    described = {"task": task, "code": code_digest(task), "kind": kind, "config": {k: cfg.get(k) for k in keys}}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:32]


def item_key(chain: str, digests: list[str]) -> str:
    return hashlib.sha256((chain + "".join(digests)).encode()).hexdigest()


def dataset_part(root) -> str:
    """The store's folder for the dataset at `root` (the digest of its resolved path)."""
    from pathlib import Path

    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
