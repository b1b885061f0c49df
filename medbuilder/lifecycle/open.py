"""Open a run folder for a flow run: a new one for a request, or an existing one to continue."""

from __future__ import annotations

from pathlib import Path

from medbuilder.lifecycle.log import run_logger
from medbuilder.lifecycle.recovery import describe, record_process, recover
from medbuilder.lifecycle.request import check_request, slug
from medbuilder.protocol.artifacts import Request, RunRecord
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import Settings


def open_run(settings: Settings, request: str, dataset: str | None, core: str | None, approve: str | None,
             run_dir: str | None, flow_run_id: str | None, api_url: str | None) -> tuple[RunFolder, str, str]:
    """The run folder, and the core and gate mode it runs with (a resumed run keeps its own)."""
    if run_dir and (Path(run_dir) / "run.json").exists():
        run = RunFolder(Path(run_dir))
        record = run.record()
        entry = recover(run, record)
        if entry.get("status_was") in ("running", "interrupted"):
            run_logger().warning("run %s was interrupted; recovered: %s", run.run_id, describe(entry))
        record.core, record.approve = core or record.core, approve or record.approve
    else:
        text = check_request(request)
        run = RunFolder(Path(run_dir)) if run_dir else RunFolder.new(settings.runs_dir, slug(text))
        run.root.mkdir(parents=True, exist_ok=True)
        run.write("request.json", Request(text=text, dataset=dataset))
        record = RunRecord(run_id=run.run_id, request=text, dataset_hint=dataset, core=core or settings.core,
                           approve=approve or settings.approve, data_dir=str(settings.data_dir.resolve()))
    record.flow_run_id, record.api_url, record.status = flow_run_id, api_url, "running"
    run.write("run.json", record)
    record_process(run)
    run_logger().info("run folder %s (core %s, gates %s)", run.root, record.core, record.approve)
    return run, record.core, record.approve
