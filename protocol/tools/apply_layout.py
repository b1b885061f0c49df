"""Dataset tool apply_layout: try a typed layout on the dataset, or submit it as the Data Engineer's answer.

The layout's JSON schema is the tool's argument schema (`medbuilder.protocol.layout.Layout`). The
shared indexer (`python -m medbuilder.protocol.indexing`) runs in the sandbox, like every script (or a
remembered run of the same job on the unchanged dataset is restored: ``indexing/memo.py``); its report is
read back without following links.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from medbuilder.protocol.indexing import IndexingReport, IndexJob
from medbuilder.protocol.indexing.memo import run_indexer_script
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.untrusted import UntrustedFileError, read_text_nofollow

LAYOUT_FILE = "layout.json"
JOB_FILE = "index_job.json"
PREVIEW_FILE = "index/layout_preview.json"


@dataclass
class LayoutResult:
    report: IndexingReport
    submitted: bool

    def as_text(self) -> str:
        head = ("Submitted: layout.json is your answer; medbuilder builds the index from it when you finish."
                if self.submitted else "Tried (nothing written; submit=true makes it your answer).")
        return head + "\n" + self.report.as_text()


def _problems(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'layout'}: {e['msg']}" for e in err.errors())


def apply_layout(ctx: Workspace, layout: Layout, submit: bool = False) -> LayoutResult:
    """Apply a dataset layout to this run's dataset: find the images, read each one's label (or mask,
    report), patient id and split from the sources the layout names, and report what matched.

    The report gives the images found, how many were matched, the count per class, a few sample
    files per class, the files that did not match and why, table rows that name no file, and the
    questions weak evidence raises (the clinician answers them at the dataset gate). Try layouts
    with submit=false (fast, writes nothing) until the report shows every image matched as you
    expect; then call it once more with submit=true. Sources: a folder name at a depth, a regex on
    the file name, a table column joined by path, name, stem or a folder id, a DICOM tag, a side
    text file. Write your own index script only when no layout can express the data.

    Args:
        layout: The layout (task, images, label or masks or report, label_map, patient, split...). Paths are relative to the dataset root.
        submit: Make this layout your answer (writes layout.json).
    """
    if ctx.dataset is None:
        raise ToolError("apply_layout serves the Data Engineer's dataset, and this workspace has none")
    try:
        parsed = layout if isinstance(layout, Layout) else Layout.model_validate(layout)
    except ValidationError as err:
        raise ToolError(f"the layout is not valid: {_problems(err)}") from None
    job = IndexJob.of(ctx.dataset, parsed)
    exit_code, output = run_indexer_script(ctx, JOB_FILE, job.model_dump_json(indent=1), preview=True)
    if exit_code != 0:
        raise ToolError(f"the layout could not be applied: {output.strip()[-1500:]}")
    try:
        report = IndexingReport.model_validate_json(read_text_nofollow(ctx.root, PREVIEW_FILE))
    except (OSError, UntrustedFileError, ValidationError) as err:
        raise ToolError(f"the indexer's report could not be read ({err}); run apply_layout again") from None
    if submit:
        target = ctx.root / LAYOUT_FILE
        target.unlink(missing_ok=True)
        target.write_text(json.dumps(job.layout.model_dump(mode="json"), indent=1))
    return LayoutResult(report, submit)
