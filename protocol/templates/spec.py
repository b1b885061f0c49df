"""Template specs: what each task folder's ``template.yaml`` declares, typed and checked.

A template folder (``protocol/templates/<task>/``) holds ``template.yaml`` (task, dims,
metric, files and the FILLABLE KEYS with type, default and doc), ``dataloader.py``,
``model.py``, ``train.py``, ``predict.py``, ``README.md`` and ``examples/``; the files of ``_common/``
(``COMMON_DIR``: common.py, engine.py, predict_common.py, confounders.py) are copied beside them into
every workspace.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from medbuilder.protocol.datacard import Task

TEMPLATES_DIR = Path(__file__).resolve().parent
COMMON_DIR = TEMPLATES_DIR / "_common"
SIZE_KEYS = ("image_size", "patch_size", "spacing")
_SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


class TemplateError(ValueError):
    """A template problem phrased with what is valid and what to do next."""


class KeySpec(BaseModel):
    """One fillable key of a template."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    type: str = Field(description="str, int, float, bool, list[int], list[float], or a union like 'str|list[float]'.")
    default: Any = None
    doc: str
    required: bool = False
    nullable: bool = False
    choices: list[Any] | None = Field(None, description="Allowed scalar values (lists are not checked against it).")
    min: float | None = None
    max: float | None = None

    def check(self, value: Any) -> Any:
        """The value, normalised (ints to floats for float keys, tuples to lists), or TemplateError."""
        if value is None:
            if self.nullable or (self.default is None and not self.required):
                return None
            raise TemplateError(f"key '{self.name}' may not be null: give a {self.type} ({self.doc})")
        problems = []
        for alternative in self.type.split("|"):
            try:
                value_ok = self._check_one(alternative.strip(), value)
            except TemplateError as err:
                problems.append(str(err))
                continue
            if self.choices is not None and not isinstance(value_ok, list) and value_ok not in self.choices:
                raise TemplateError(f"key '{self.name}' is {value!r}; valid values: {self.choices}")
            return value_ok
        raise TemplateError(f"key '{self.name}' has wrong type: {value!r} ({type(value).__name__}) is not "
                            f"{self.type}. {'; '.join(problems)}. Doc: {self.doc}")

    def _check_one(self, kind: str, value: Any) -> Any:
        if kind.startswith("list[") and kind.endswith("]"):
            if not isinstance(value, (list, tuple)) or not value:
                raise TemplateError(f"expected a non-empty list of {kind[5:-1]}")
            return [self._scalar(kind[5:-1], v) for v in value]
        return self._scalar(kind, value)

    def _scalar(self, kind: str, value: Any) -> Any:
        if kind not in _SCALARS:
            raise TemplateError(f"unknown type {kind!r} in template.yaml")
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, _SCALARS[kind]):
            raise TemplateError(f"expected {kind}")
        if kind == "float":
            value = float(value)
        if kind in ("int", "float"):
            if self.min is not None and value < self.min:
                raise TemplateError(f"key '{self.name}' must be >= {self.min:g}, got {value}")
            if self.max is not None and value > self.max:
                raise TemplateError(f"key '{self.name}' must be <= {self.max:g}, got {value}")
        return value


class TemplateSpec(BaseModel):
    """A training template: its task, dims, metric, files and fillable keys."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    task: Task
    description: str
    dims: list[int]
    metric: str
    files: list[str]
    keys: dict[str, KeySpec]
    folder: Path

    def defaults(self) -> dict[str, Any]:
        return {name: key.default for name, key in self.keys.items()}

    def key_table(self) -> str:
        """One line per key: name, type, default and doc (for agents and error messages)."""
        return "\n".join(f"- {k.name} ({k.type}{', required' if k.required else ''}; default {k.default!r}): {k.doc}"
                         for k in self.keys.values())

    def check_config(self, config: dict[str, Any]) -> None:
        """Cross-key checks: dims supported, size lists matching spatial_dims."""
        dims = config.get("spatial_dims")
        if dims is not None and dims not in self.dims:
            raise TemplateError(f"template '{self.name}' supports spatial_dims {self.dims}, not {dims}")
        for key in SIZE_KEYS:
            value = config.get(key)
            if key in self.keys and value is not None and dims is not None and len(value) != dims:
                raise TemplateError(f"key '{key}' is {value}: it needs {dims} numbers for spatial_dims={dims} "
                                    f"(or null where allowed)")


@lru_cache(maxsize=None)
def _load(task: str) -> TemplateSpec:
    folder = TEMPLATES_DIR / task
    data = yaml.safe_load((folder / "template.yaml").read_text())
    keys = {name: KeySpec(name=name, **fields) for name, fields in (data.pop("keys") or {}).items()}
    return TemplateSpec(**data, keys=keys, folder=folder)


def template_names() -> list[str]:
    return sorted(p.name for p in TEMPLATES_DIR.iterdir() if (p / "template.yaml").is_file())


def get_template(task: Task | str) -> TemplateSpec:
    """The spec of one task's template; an unknown task lists the valid ones."""
    name = task.value if isinstance(task, Task) else str(task)
    if name not in template_names():
        raise TemplateError(f"no template for task {name!r}; valid tasks: {', '.join(template_names())}")
    return _load(name)


def list_templates() -> list[TemplateSpec]:
    return [_load(name) for name in template_names()]
