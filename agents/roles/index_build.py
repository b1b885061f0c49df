"""The index the Data Engineer's submitted layout gives, built by medbuilder itself.

The shared indexer runs in the sandbox in a folder of its own (``runs/<id>/indexer/``), not in the
agents' workspace, so the counts and questions the clinician approves at the dataset gate are
medbuilder's: the layout and the report go to the run folder, the index files to
``workspace/index/`` for the templates.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import ValidationError

from medbuilder.agents.layout.labels import LabelMatcher
from medbuilder.agents.roles.base import RoleContext
from medbuilder.protocol.indexing import DatasetFacts, IndexingReport, IndexJob
from medbuilder.protocol.indexing.memo import run_indexer_script
from medbuilder.protocol.layout import Layout
from medbuilder.protocol.tools import Workspace
from medbuilder.protocol.tools.sandbox import SandboxConfig
from medbuilder.protocol.untrusted import UntrustedFileError, copy_nofollow, read_text_nofollow

LAYOUT = "layout.json"
INDEX_FILES = ("train.json", "test.json", "label_dict.json")


def dataset_facts(ctx: RoleContext) -> DatasetFacts:
    card = ctx.card
    normal = LabelMatcher(card.label_names).normal
    return DatasetFacts(root=str(ctx.dataset_root), task=ctx.plan.task, dimension=card.dimension,
                        label_names=card.label_names, normal_class=normal)


def submitted_layout(ctx: RoleContext) -> Layout | None:
    """The layout the agent submitted (workspace/layout.json), or None; a broken one raises ValueError."""
    try:
        text = read_text_nofollow(ctx.run.workspace, LAYOUT)
    except FileNotFoundError:
        return None
    except UntrustedFileError as err:
        raise ValueError(f"{LAYOUT}: {err}") from None
    try:
        return Layout.model_validate_json(text)
    except ValidationError as err:
        raise ValueError(f"{LAYOUT} is not a valid layout: {err}") from None


def _clear_index(ctx: RoleContext) -> None:
    for name in (*INDEX_FILES, "indexing_report.json"):
        (ctx.run.index_dir / name).unlink(missing_ok=True)


def build_index(ctx: RoleContext, layout: Layout) -> IndexingReport | str:
    """Apply `layout` with the shared indexer; the report, or why it could not be applied."""
    job = IndexJob.of(dataset_facts(ctx), layout)
    ctx.run.write(LAYOUT, job.layout)
    _clear_index(ctx)
    folder = ctx.run.path("indexer")
    report = run_indexer(folder, ctx.dataset_root, job, ctx.settings)
    if isinstance(report, str):
        return report
    ctx.run.write("indexing_report.json", report)
    try:
        for name in INDEX_FILES:
            if os.path.lexists(folder / "index" / name):
                copy_nofollow(folder, f"index/{name}", ctx.run.index_dir / name)
    except UntrustedFileError as err:
        return f"the indexer's output could not be read: {err}"
    return report


def run_indexer(folder: Path, dataset_root: Path, job: IndexJob, settings) -> IndexingReport | str:
    """Run the shared indexer on `job` in the sandbox, in `folder` (emptied first; the index files land in
    folder/index/); its report, or why it could not run."""
    shutil.rmtree(folder, ignore_errors=True)
    workspace = Workspace.create(folder, [dataset_root], output_chars=settings.tool_output_chars,
                                 script_timeout_s=settings.script_timeout_s,
                                 sandbox=SandboxConfig.from_settings(settings))
    exit_code, output = run_indexer_script(workspace, "index_job.json", job.model_dump_json(indent=1), preview=False)
    if exit_code != 0:
        return output.strip()[-1500:] or f"the indexer stopped with exit code {exit_code}"
    try:
        report_name = "layout_preview.json" if os.path.lexists(folder / "index" / "layout_preview.json") \
            else "indexing_report.json"
        return IndexingReport.model_validate_json(read_text_nofollow(folder, f"index/{report_name}"))
    except (UntrustedFileError, ValidationError) as err:
        return f"the indexer's output could not be read: {err}"
