"""Datacards: a free-text description of a dataset plus typed fields.

The free text is what an agent reads first, as in M3Builder's datacards: what the
folders and files are, which columns hold the labels, sampling rules. The typed
fields let the Task Manager match a request and let tools check the data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medbuilder.protocol.layout import Layout
from medbuilder.protocol.task import Task


class Confounder(BaseModel):
    """Something in the images that can stand in for the label (a shortcut), and how to find it.

    The typed fields say where the evidence is: metadata columns (presence, a mask of the
    confounder, the same image with the confounder toggled) or a region of interest the
    model should look inside (a detector in ``medbuilder.protocol.confounders``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="e.g. 'burnt-in text', 'chest drain'.")
    synonyms: list[str] = Field(default_factory=list, description="Other words for it: 'chest tube', 'ICD'.")
    how_to_find: str = Field(description="Free text: a mask file column, a region of interest, or a detector.")
    presence_column: str | None = Field(None, description="Metadata column: 1/0 or true/false per image.")
    mask_column: str | None = Field(None, description="Metadata column: path of a mask of the confounder.")
    counterfactual_column: str | None = Field(
        None, description="Metadata column: path of the same image with the confounder added or removed.")
    roi: str | None = Field(None, description="Region the model should look inside, by detector name (e.g. 'head').")


class Datacard(BaseModel):
    """One dataset, described for agents and for people."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str = Field(description="Unique slug: lower case letters, digits, '-' and '_'.")
    title: str = Field(description="Human-readable name.")
    description: str = Field(min_length=40, description="Free text: folders, files, label columns, sampling rules.")
    path: Path = Field(description="Dataset root: absolute, or relative to the data folder.")
    tasks: list[Task] = Field(min_length=1)
    modality: str = Field(description="e.g. MRI, CT, X-ray, fundus.")
    dimension: Literal["2D", "3D"]
    anatomy: str = Field(description="e.g. brain, chest.")
    has_images: bool = Field(True, description="False for text-only sets (reports without their images).")
    label_names: list[str] = Field(default_factory=list, description="Class or structure names; empty for report text.")
    label_synonyms: dict[str, list[str]] = Field(
        default_factory=dict, description="Per label name, other words or codes the data or a request uses for it, "
                                          "e.g. {'mass': ['tumour', 'M'], 'no mass': ['N', 'normal']}.")
    file_formats: list[str] = Field(min_length=1, description="e.g. jpg, nii.gz, csv, json.")
    licence: str
    provenance: Literal["real", "generated"]
    source: str = Field(description="Where the files come from (package, URL, generator).")
    use: Literal["training", "validation"] = Field(
        "training", description="validation: held out to validate models built on other cards "
                                "(`medbuilder evaluate RUN --dataset NAME`); never chosen to train one.")
    held_out_from: str | None = Field(
        None, description="The datacard whose source this set was held out from (same source, disjoint scans): its "
                          "external validation is a held-out test, not another site's.")
    prepare: str | None = Field(None, description="Name of the `medbuilder data prepare` recipe that lays this dataset out.")
    confounders: list[Confounder] = Field(default_factory=list)
    layout: Layout | None = Field(None, description="Where images, labels, masks, ids and splits are (see "
                                                    "medbuilder.protocol.layout); inferred from the files when absent.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
            raise ValueError("use lower case letters, digits, '-' and '_' (e.g. 'br35h')")
        return value

    @field_validator("file_formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        return [v.lower().lstrip(".") for v in value]

    @model_validator(mode="after")
    def _synonyms_name_labels(self) -> "Datacard":
        unknown = sorted(set(self.label_synonyms) - set(self.label_names))
        if unknown:
            raise ValueError(f"label_synonyms names {unknown}, which are not in label_names {self.label_names}")
        return self

    @model_validator(mode="after")
    def _generated_is_named(self) -> "Datacard":
        if self.provenance == "generated" and "generated" not in (self.title + self.description).lower():
            raise ValueError("provenance is 'generated': say 'generated' in the title or description")
        return self

    def tasks_text(self) -> str:
        return ", ".join(t.value for t in self.tasks)
