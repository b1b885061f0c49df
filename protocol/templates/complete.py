"""medbuilder's own filling of the config.json a role wrote: its keys, and the rest from template.yaml.

A role (an LLM especially) may write only some keys of ``config.json``. The template code would fill
the others from ``template.yaml`` beside it, but a round snapshot and medbuilder's host-side inference
have no ``template.yaml`` there. So after the Module Architect and the Model Trainer act, medbuilder
reads the workspace's ``config.json`` (never through a link), merges it over the template's defaults,
checks it, writes the complete config back, and records the fill in the run folder
(``template_fill.json``, outside the workspace, where no agent can edit it). A config that does not
pass comes back as findings for the role.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medbuilder.protocol.templates.fill import CONFIG, FillRecord, build_config, fill_record, planned_files
from medbuilder.protocol.templates.spec import TemplateError, get_template
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow

MAX_CONFIG_BYTES = 1 << 20


def complete_config(task: str, workspace: Path, index_dir: Path, record_file: Path, role: str) -> list[str]:
    """Fill the workspace's config.json from the template and record it in `record_file`; the findings, if any."""
    spec = get_template(task)
    values, problem = _read_values(workspace)
    if problem:
        return [problem]
    written = dict(values)  # the keys the role wrote, as the record names them
    given = values.get("index_dir")
    values["index_dir"] = str(_resolved(given, workspace) if given else index_dir)
    if Path(values["index_dir"]) != Path(index_dir).resolve():
        return [f"{CONFIG} sets index_dir to {given!r}; it must be {index_dir}, the index the Data Engineer wrote "
                "and medbuilder checked"]
    try:
        config, _, _ = build_config(spec, values)
    except TemplateError as err:
        return [f"{CONFIG} does not fit the {task} template: {err}"]
    _replace(workspace / CONFIG, json.dumps(config, indent=1) + "\n")
    record = fill_record(spec, workspace, written, config, planned_files(spec, config))
    record.filled_by = role
    record.sources = _sources(config, written, role, FillRecord.model_validate_json(record_file.read_text())
                              if record_file.exists() else None)
    record.from_values = [k for k, source in record.sources.items() if source != "default"]
    record.from_defaults = [k for k, source in record.sources.items() if source == "default"]
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(record.model_dump_json(indent=1))
    return []


def _sources(config: dict, written: dict, role: str, previous: FillRecord | None) -> dict[str, str]:
    """Who chose each key: a key the role left out is the template's default; a key it wrote with the value
    the last fill had keeps that fill's source (a role that rewrites the whole file chose only what it changed)."""
    sources = {}
    for key, value in config.items():
        if key not in written:
            sources[key] = "default"
        elif previous is not None and key in previous.config and previous.config[key] == value:
            sources[key] = previous.sources.get(key, role)
        else:
            sources[key] = role
    return sources


def _read_values(workspace: Path) -> tuple[dict, str | None]:
    try:
        text = read_text_nofollow(workspace, CONFIG, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return {}, f"the workspace has no {CONFIG}: write it with the template's data keys"
    except UntrustedFileError as err:
        return {}, f"{CONFIG} cannot be read ({err}); write it as a plain file"
    try:
        values = json.loads(text)
    except ValueError as err:
        return {}, f"{CONFIG} is not valid JSON ({err}); write one JSON object of template keys"
    if not isinstance(values, dict):
        return {}, f"{CONFIG} holds a JSON {type(values).__name__}; write one JSON object of template keys"
    return values, None


def _resolved(value, workspace: Path) -> Path:
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else Path(workspace) / path).resolve()


def _replace(target: Path, text: str) -> None:
    """Write `target` whole through a new file renamed over it: a link planted at `target` is replaced, not followed."""
    partial = target.with_name(f".{target.name}.medbuilder-{os.getpid()}")
    if os.path.lexists(partial):
        os.unlink(partial)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)
