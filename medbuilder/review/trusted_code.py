"""Host-side inference with medbuilder's own template code, never with the code in a workspace or a bundle.

Evaluation, interpretability, ``medbuilder predict`` and the nightly re-evaluation need the trained
network on the host. The workspace's (and so the bundle's) scripts are agent-writable, so they are not
run here: medbuilder checks that they are still its template's code (sha256, read without following
links) and then runs its own copy of that template, staged in a host folder, on the round's data
(config.json and the weights, read with ``torch.load(weights_only=True)``). Code that an agent edited
is refused with a message naming the files; inference on it belongs in the sandbox.
"""

from __future__ import annotations

import hashlib
import os
import runpy
import shutil
import threading
from pathlib import Path

from medbuilder.protocol.templates import fill
from medbuilder.protocol.templates.spec import get_template
from medbuilder.protocol.untrusted import UntrustedFileError, open_nofollow

CODE_SUFFIX = ".py"
TRUSTED_CODE = "trusted_code"  # beside the workspace: runs/<id>/trusted_code/<task>/


class EditedCodeError(RuntimeError):
    """The folder's code is not medbuilder's template code; the message names the files."""

IMPORTING = threading.RLock()  # template code imports its siblings by name (common, engine): one folder at a time


def template_code(task: str) -> dict[str, bytes]:
    """File name -> medbuilder's own source, as a workspace holds it (the template's and the common files)."""
    files = fill.template_files(get_template(task))
    return {rel: data for rel, data in files.items() if rel.endswith(CODE_SUFFIX) and "/" not in rel}


def _digest(folder: Path, name: str) -> str:
    with open_nofollow(folder, name) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def edited_files(folder: Path, task: str) -> list[str]:
    """The template files in `folder` that differ from medbuilder's (a link or hard link counts as edited)."""
    edited = []
    for name, source in template_code(task).items():
        if not os.path.lexists(folder / name):
            continue
        try:
            same = _digest(folder, name) == hashlib.sha256(source).hexdigest()
        except (UntrustedFileError, OSError):
            same = False
        if not same:
            edited.append(name)
    return edited


def stage_trusted_code(task: str, folder: Path, target: Path) -> Path:
    """medbuilder's template code for `task` in `target` (made fresh), after checking `folder` holds it unedited."""
    edited = edited_files(Path(folder), task)
    if edited:
        raise EditedCodeError(
            f"{', '.join(edited)} in {folder} differ from medbuilder's {task} template: medbuilder runs only its own "
            "template code outside the sandbox, so it cannot evaluate or predict with this code on the host. Restore "
            "the template's files (medbuilder template list) or keep the edits to config.json")
    return write_template_code(task, target)


def write_template_code(task: str, target: Path) -> Path:
    """medbuilder's template code for `task`, written fresh into `target` (a host folder)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name, source in template_code(task).items():
        (target / name).write_bytes(source)
    return target.resolve()


def trusted_predict(task: str, folder: Path, target: Path) -> dict:
    """The namespace of medbuilder's own predict.py for `task` (load, Predictor, read_config, ...)."""
    code = stage_trusted_code(task, folder, target)
    with IMPORTING:
        return runpy.run_path(str(code / "predict.py"), run_name="medbuilder_trusted_predict")
