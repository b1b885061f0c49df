"""``python -m medbuilder.protocol.indexing JOB.json [--preview]``: apply a layout, write the index.

Run by the ``index_dataset`` tool inside the sandbox, in the run's workspace. JOB.json is an
`IndexJob`. With --preview only the matching runs (no split, no index): the report goes to
``index/layout_preview.json``. Otherwise the index and ``index/indexing_report.json`` are
written. Exit 0 in both cases; exit 2 when the layout cannot be applied at all (the message
says why).
"""

from __future__ import annotations

import sys
from pathlib import Path

from medbuilder.protocol.indexing.apply import IndexJob, LayoutFailure, apply_layout
from medbuilder.protocol.indexing.split import write_json, write_index


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    job = IndexJob.model_validate_json(Path(argv[0]).read_text())
    out = Path("index")
    out.mkdir(exist_ok=True)
    try:
        records, report = apply_layout(job)
    except LayoutFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "--preview" in argv or not records or not job.layout.resolved:
        write_json(out / "layout_preview.json", report.model_dump(mode="json"))
    else:
        write_index(records, report, out, job.layout.task.value, job.dimension, job.label_names, job.normal_class)
    print(report.as_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
