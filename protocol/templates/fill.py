"""Fill a template by name into a workspace, and record the filling (``template_fill.json``)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medbuilder.protocol.datacard import Task
from medbuilder.protocol.templates.spec import COMMON_DIR, TemplateError, TemplateSpec, get_template

FILL_RECORD = "template_fill.json"
CONFIG = "config.json"
_SKIP = {"__pycache__", ".pytest_cache"}


class FillRecord(BaseModel):
    """What a fill wrote: the template, which keys came from values or defaults, file hashes.

    `fill_template` writes it beside the config; after a role, medbuilder writes it in the run folder
    (``template_fill.json``), where no agent can edit it (``complete.py``)."""

    format_version: int = 1
    template: str
    version: str
    task: Task
    workspace: str
    filled_at: str
    values: dict[str, Any]
    from_values: list[str]
    from_defaults: list[str]
    config: dict[str, Any]
    files: dict[str, str]  # sha256 of the template's own files and of the config written: what "edited" is against
    filled_by: str = "fill_template"  # or the role after which medbuilder filled the config it wrote
    sources: dict[str, str] = {}  # key -> the role that chose its value, or "default" (filled from template.yaml)

    def write(self, workspace: Path) -> None:
        (workspace / FILL_RECORD).write_text(self.model_dump_json(indent=1))

    @classmethod
    def read(cls, workspace: Path) -> "FillRecord | None":
        path = Path(workspace) / FILL_RECORD
        return cls.model_validate_json(path.read_text()) if path.exists() else None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def template_files(spec: TemplateSpec) -> dict[str, bytes]:
    """Relative path -> content of every file copied into a workspace (task folder + common.py)."""
    files = {}
    for path in sorted(spec.folder.rglob("*")):
        rel = path.relative_to(spec.folder)
        if path.is_file() and not _SKIP & set(rel.parts) and path.suffix != ".pyc":
            files[rel.as_posix()] = path.read_bytes()
    for path in sorted(COMMON_DIR.glob("*.py")):
        files[path.name] = path.read_bytes()
    return files


def build_config(spec: TemplateSpec, values: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Validated values merged over the defaults; unknown keys and wrong types raise TemplateError."""
    unknown = sorted(set(values) - set(spec.keys))
    if unknown:
        raise TemplateError(f"unknown key(s) {unknown} for template '{spec.name}'; valid keys: "
                            f"{', '.join(spec.keys)}.\n{spec.key_table()}")
    config: dict[str, Any] = {}
    for name, key in spec.keys.items():
        if name in values:
            config[name] = key.check(values[name])
        elif key.required:
            raise TemplateError(f"key '{name}' is required for template '{spec.name}': {key.doc}")
        else:
            config[name] = key.default
    if "index_dir" in config and config["index_dir"]:
        index_dir = Path(config["index_dir"]).expanduser().resolve()
        if not (index_dir / "train.json").is_file() or not (index_dir / "test.json").is_file():
            raise TemplateError(f"index_dir {index_dir} has no train.json/test.json: point it at the folder the "
                                f"Data Engineer wrote (see examples/ in the template for the format)")
        config["index_dir"] = str(index_dir)
    spec.check_config(config)
    from_values = [k for k in spec.keys if k in values]
    return config, from_values, [k for k in spec.keys if k not in values]


def _conflicts(workspace: Path, planned: dict[str, bytes], previous: FillRecord | None) -> list[str]:
    """Files that exist with content neither planned nor as recorded by the last fill (edited)."""
    out = []
    for rel, data in planned.items():
        target = workspace / rel
        if not target.exists():
            continue
        current = _sha(target.read_bytes())
        if current == _sha(data) or (previous is not None and previous.files.get(rel) == current):
            continue
        out.append(rel)
    return out


def fill_template(task: Task | str, workspace: Path | str, values: dict[str, Any],
                  overwrite: bool = False) -> FillRecord:
    """Copy the task's template into ``workspace`` and write ``config.json`` and ``template_fill.json``.

    ``values`` are checked against the template's fillable keys (unknown key or wrong
    type: TemplateError listing the valid keys) and merged over the defaults. A file
    in the workspace that was edited since the last fill (or was not written by it) is
    never replaced silently: TemplateError names it unless ``overwrite=True``.
    """
    spec = get_template(task)
    workspace = Path(workspace).resolve()
    config, _, _ = build_config(spec, dict(values))
    planned = planned_files(spec, config)
    workspace.mkdir(parents=True, exist_ok=True)
    previous = FillRecord.read(workspace) if (workspace / FILL_RECORD).exists() else None
    conflicts = _conflicts(workspace, planned, previous)
    if conflicts and not overwrite:
        raise TemplateError(f"{workspace} holds edited files that filling would replace: {conflicts}. "
                            f"Pass overwrite=True to replace them, or fill into a fresh workspace.")
    for rel, data in planned.items():
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    record = fill_record(spec, workspace, values, config, planned)
    record.write(workspace)
    return record


def planned_files(spec: TemplateSpec, config: dict[str, Any]) -> dict[str, bytes]:
    """Every file a fill writes: the template's files and config.json."""
    planned = template_files(spec)
    planned[CONFIG] = (json.dumps(config, indent=1) + "\n").encode()
    return planned


def fill_record(spec: TemplateSpec, workspace: Path, values: dict[str, Any], config: dict[str, Any],
                planned: dict[str, bytes]) -> FillRecord:
    """The record of a fill: which keys came from `values`, which from defaults, and file hashes."""
    return FillRecord(template=spec.name, version=spec.version, task=spec.task, workspace=str(workspace),
                      filled_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      values=json.loads(json.dumps(dict(values), default=str)),
                      from_values=[k for k in spec.keys if k in values],
                      from_defaults=[k for k in spec.keys if k not in values], config=config,
                      files={rel: _sha(data) for rel, data in planned.items()})
