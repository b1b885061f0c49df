"""The tools by name: the 13 of M3Builder's Table 1 (8 workspace tools, 5 medical-imaging tools) and
apply_layout, through which the Data Engineer answers with a typed dataset layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from medbuilder.protocol.tools.apply_layout import apply_layout
from medbuilder.protocol.tools.augment import augment_image
from medbuilder.protocol.tools.copy import copy_files
from medbuilder.protocol.tools.edit import edit_file
from medbuilder.protocol.tools.files import list_files, read_files, write_file
from medbuilder.protocol.tools.medload import load_med_data
from medbuilder.protocol.tools.normalize import normalize_image
from medbuilder.protocol.tools.preview_dirs import preview_dirs
from medbuilder.protocol.tools.preview_files import preview_files
from medbuilder.protocol.tools.report import verify_report
from medbuilder.protocol.tools.run import run_script
from medbuilder.protocol.tools.spatial import check_3D


@dataclass(frozen=True)
class ToolSpec:
    """A tool: its name as the model sees it, the Python function (ctx first), its category."""

    name: str
    function: Callable
    category: Literal["workspace", "medical", "dataset", "planning"]


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec("list_files", list_files, "workspace"),
        ToolSpec("read_files", read_files, "workspace"),
        ToolSpec("copy_files", copy_files, "workspace"),
        ToolSpec("write_file", write_file, "workspace"),
        ToolSpec("edit_file", edit_file, "workspace"),
        ToolSpec("run_script", run_script, "workspace"),
        ToolSpec("preview_dirs", preview_dirs, "workspace"),
        ToolSpec("preview_files", preview_files, "workspace"),
        ToolSpec("load_med_data", load_med_data, "medical"),
        ToolSpec("check_3D", check_3D, "medical"),
        ToolSpec("normalize_image", normalize_image, "medical"),
        ToolSpec("verify_report", verify_report, "medical"),
        ToolSpec("augment_image", augment_image, "medical"),
        ToolSpec("apply_layout", apply_layout, "dataset"),
    ]
}


def tool_names(category: str | None = None) -> list[str]:
    """All tool names, or those of one category ('workspace', 'medical' or 'dataset')."""
    return [name for name, spec in TOOLS.items() if category in (None, spec.category)]
