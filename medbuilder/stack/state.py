"""The stack's state folder and its record, ``stack.json``: what `medbuilder up` started (pids, process groups,
ports, URLs, logs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from medbuilder.stack.auth import DEFAULT_STATE, STACK_FILE


class StackError(RuntimeError):
    """Something the person can fix: the message says what and how."""


def state_dir(state: Path | str | None = None) -> Path:
    folder = Path(state or os.environ.get("MEDBUILDER_STACK_DIR") or DEFAULT_STATE).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# medbuilder up: processes, logs and the Prefect database; nothing here goes to git\n*\n")
    return folder


def read_stack(state: Path) -> dict | None:
    file = state / STACK_FILE
    return json.loads(file.read_text()) if file.exists() else None


def write_stack(state: Path, stack: dict) -> None:
    tmp = state / f"{STACK_FILE}.tmp"
    tmp.write_text(json.dumps(stack, indent=1) + "\n")
    tmp.replace(state / STACK_FILE)
