"""The agent toolset: the 13 tools of M3Builder's Table 1, confined to one run's workspace.

Build a `Workspace` (the run's workspace folder, read-write-execute, plus read-only
roots such as the chosen dataset and the reference files), then either call the
tool functions from Python (each takes the workspace first and returns a
structured result with ``as_text()``), or hand the model
``langchain_tools(workspace)``, whose observations are text and whose errors come
back as observations.

    ws = Workspace.create("runs/r1/workspace", read_roots=[dataset_root, refs_root])
    load_med_data(ws, "/data/br35h/yes/y0.jpg").array
    tools = langchain_tools(ws, ["list_files", "read_files", "write_file"])
"""

from medbuilder.protocol.tools.augment import AugmentPlan, augment_image, build_augmentation
from medbuilder.protocol.tools.calls import ToolOutcome, call_tool, invalid_arguments, render
from medbuilder.protocol.tools.context import ToolError, Workspace, cut_middle, natural_key
from medbuilder.protocol.tools.copy import CopyResult, copy_files
from medbuilder.protocol.tools.edit import EditResult, edit_file
from medbuilder.protocol.tools.files import FileText, Listing, WriteResult, list_files, read_files, write_file
from medbuilder.protocol.tools.langchain_layer import as_langchain_tool, langchain_tools
from medbuilder.protocol.tools.medload import MedImage, load_med_data, load_medical, save_array
from medbuilder.protocol.tools.normalize import PRESETS, NormalizeResult, normalize_array, normalize_image
from medbuilder.protocol.tools.preview_dirs import DirPreview, preview_dirs
from medbuilder.protocol.tools.preview_files import FilePreview, preview_files
from medbuilder.protocol.tools.registry import TOOLS, ToolSpec, tool_names
from medbuilder.protocol.tools.report import ReportCheck, check_report, clean_text, verify_report
from medbuilder.protocol.tools.run import ScriptResult, run_script
from medbuilder.protocol.tools.spatial import SpatialCheck, check_3D, compare_image_mask

__all__ = [
    "TOOLS", "PRESETS", "ToolError", "ToolSpec", "Workspace",
    "list_files", "read_files", "copy_files", "write_file", "edit_file", "run_script", "preview_dirs", "preview_files",
    "load_med_data", "check_3D", "normalize_image", "verify_report", "augment_image",
    "langchain_tools", "as_langchain_tool", "render", "tool_names", "call_tool", "invalid_arguments", "ToolOutcome",
    "load_medical", "save_array", "compare_image_mask", "normalize_array", "check_report", "clean_text",
    "build_augmentation", "cut_middle", "natural_key",
    "AugmentPlan", "CopyResult", "DirPreview", "EditResult", "FilePreview", "FileText", "Listing", "MedImage",
    "NormalizeResult", "ReportCheck", "ScriptResult", "SpatialCheck", "WriteResult",
]
