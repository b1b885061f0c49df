"""Crash recovery: tell a live run from an interrupted one, and clean up before a resume.

The flow process records itself in ``process.json`` (pid, the creation time of
that pid, host). A run whose ``run.json`` says ``running`` but whose process is gone
was interrupted (SIGKILL, out of memory, power loss): `medbuilder runs` and the
dashboard show it as ``interrupted``. `medbuilder resume` then (``recover``):

- refuses while the flow process still lives;
- turns stage records left ``running`` into ``failed`` with error ``interrupted: ...``
  (they run again; training continues from ``checkpoints/last.pt``);
- stops any process still working in the run's workspace (a training the kill left
  behind), so two trainings never write the same checkpoints;
- removes a stale ``gates/pending.json`` (the new flow run asks the same gate again);
- marks the old Prefect flow run ``Crashed`` (it stays ``Running`` or ``Paused`` after
  a SIGKILL), when its API answers;
- appends what it found and did to ``interruptions.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

from medbuilder.proctree import created, recorded_start, running, working_in
from medbuilder.protocol.artifacts import RunRecord, StageRecord, now
from medbuilder.protocol.run_folder import RunFolder

PROCESS_FILE = "process.json"
INTERRUPTIONS_FILE = "interruptions.json"


class StillRunning(RuntimeError):
    """The run's flow process is alive: it cannot be resumed by a second one."""


def record_process(run: RunFolder) -> None:
    pid = os.getpid()
    run.write(PROCESS_FILE, {"pid": pid, "created": created(pid), "host": socket.gethostname(),
                             "started": now()})


def flow_process(run: RunFolder) -> dict | None:
    """The live flow process of this run (its process.json entry), or None when it is gone."""
    if not run.exists(PROCESS_FILE):
        return None
    info = run.read_json(PROCESS_FILE)
    if info.get("host") != socket.gethostname():
        return None  # another machine's process cannot be checked from here
    since = recorded_start(info)  # the creation time tells the pid from a reused one
    return info if since is not None and running(int(info["pid"]), since) else None


def process_gone(run: RunFolder) -> bool:
    """True when the run's recorded flow process is known to have stopped (False: alive, or cannot tell)."""
    if not run.exists(PROCESS_FILE):
        return False  # a run from before process.json, or one not started yet
    info = run.read_json(PROCESS_FILE)
    return info.get("host") == socket.gethostname() and flow_process(run) is None


def observed_status(root: Path, status: str) -> str:
    """run.json's status, except that a ``running`` run whose flow process is gone is ``interrupted``."""
    if status == "running" and process_gone(RunFolder(Path(root))):
        return "interrupted"
    return status


# ----------------------------------------------------------------------------- leftovers


def stop_workspace_processes(workspace: Path, wait_s: float = 10.0) -> list[int]:
    """SIGKILL what still runs in the workspace (e.g. a training whose flow process died); wait for it."""
    pids = working_in(workspace)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and set(pids) & set(working_in(workspace)):
        time.sleep(0.1)
    return pids


# ----------------------------------------------------------------------------- Prefect


def api_reachable(api_url: str | None) -> bool:
    if not api_url:
        return False
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def mark_crashed(flow_run_id: str, api_url: str | None) -> str:
    """Set the old flow run's state to Crashed (forced); returns what happened, in words."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from medbuilder.stack.auth import api_settings

    if not api_reachable(api_url):
        return f"not marked: its Prefect API {api_url} does not answer"
    with api_settings(api_url), get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
        if state is not None and state.is_final():
            return f"left as {state.type.value}"
        client.set_flow_run_state(UUID(flow_run_id), Crashed(message="the flow process stopped (killed or lost); "
                                                                     "`medbuilder resume` continued the run"),
                                  force=True)
    return f"marked CRASHED (was {state.type.value if state else 'unknown'})"


# ----------------------------------------------------------------------------- recover


def interrupt_stages(run: RunFolder) -> list[str]:
    """Stage records left ``running`` become ``failed: interrupted`` (they run again on resume)."""
    names = []
    for file in sorted((run.root / "stages").glob("*.json")):
        record = run.read(f"stages/{file.name}", StageRecord)
        if record.status == "running":
            record.status, record.error = "failed", "interrupted: the flow process stopped while this stage ran"
            run.save_stage(record)
            names.append(record.stage)
    return names


def retry_no_fit(run: RunFolder) -> list[str]:
    """A run that ended with no dataset fitting asks the Task Manager again (a datacard may have been added)."""
    files = sorted((run.root / "stages").glob("task_manager*.json"))
    for file in files:
        file.unlink()
    return [f.stem for f in files]


def recover(run: RunFolder, record: RunRecord) -> dict:
    """Clean up after an interrupted flow process before a new one continues the run; returns the entry logged."""
    alive = flow_process(run)
    if alive and alive["pid"] != os.getpid():  # this process may resume a run it ran before (in-process use)
        raise StillRunning(f"run {run.run_id} is still running (flow process {alive['pid']} since "
                           f"{alive['started']}): wait for it, or stop that process before resuming")
    entry: dict = {"when": now(), "status_was": record.status, "old_flow_run_id": record.flow_run_id}
    if record.status == "no_fit":
        entry["task_manager_reset"] = retry_no_fit(run)
    entry["interrupted_stages"] = interrupt_stages(run)
    entry["stopped_processes"] = stop_workspace_processes(run.workspace) if run.workspace.is_dir() else []
    if run.exists("gates/pending.json"):
        entry["gate_was_waiting"] = run.read_json("gates/pending.json").get("gate")
        run.path("gates/pending.json").unlink()
    if record.flow_run_id and record.status in ("running", "interrupted"):
        try:
            entry["old_flow_run"] = mark_crashed(record.flow_run_id, record.api_url)
        except Exception as err:  # the run goes on; the old flow run only shows a stale state in the UI
            entry["old_flow_run"] = f"not marked: {type(err).__name__}: {err}"
    if record.status == "running":
        record.status = "interrupted"
        run.write("run.json", record)
    if record.status not in ("running", "interrupted") and not entry["interrupted_stages"]:
        return entry  # a finished run resumed again: nothing was interrupted
    history = run.read_json(INTERRUPTIONS_FILE) if run.exists(INTERRUPTIONS_FILE) else []
    run.write(INTERRUPTIONS_FILE, [*history, entry])
    return entry


def describe(entry: dict) -> str:
    return json.dumps({k: v for k, v in entry.items() if v not in (None, [], "")})
