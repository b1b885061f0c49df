"""What the dashboard reads and does, without Streamlit: run folders, datacards, Prefect.

Every function here is plain Python over the run folders (``runs/<run-id>/``, tree in
``medbuilder.flows.build``), the datacards folder and the Prefect API, so the pages
only render and the logic can be tested without a browser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from medbuilder.dashboards import progress
from medbuilder.lifecycle.recovery import observed_status
from medbuilder.progress import ScriptProgress, read_progress
from medbuilder.protocol.artifacts import RunRecord, StageRecord
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import get_settings
from medbuilder.stages.registry import ROLES
from medbuilder.stages.registry import role_of as stage_role

DEPLOYMENT = "build_model/build"
ACTIVE = {"created", "running", "suspended"}  # suspended: a deployment's run waiting at a gate, no process


# ---------------------------------------------------------------- runs


@dataclass
class RunInfo:
    run_id: str
    root: Path
    status: str
    request: str
    dataset: str | None
    created: str
    flow_run_id: str | None = None
    api_url: str | None = None
    pending: dict | None = None  # gates/pending.json while the run waits at a gate
    extra: dict = field(default_factory=dict)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.root)

    @property
    def shown_status(self) -> str:
        return f"waiting at {self.pending['gate']}" if self.pending else self.status


def runs_dir() -> Path:
    return Path(get_settings().runs_dir)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_info(root: Path) -> RunInfo | None:
    data = read_json(root / "run.json")
    if not data:
        return None
    try:
        record = RunRecord.model_validate(data)
    except ValueError:
        return None
    plan = read_json(root / "plan.json") or {}
    status = observed_status(root, record.status)
    # a run interrupted at a gate has no process left to take the answer: it is not waiting until resumed
    pending = None if status == "interrupted" else read_json(root / "gates" / "pending.json")
    return RunInfo(run_id=record.run_id, root=root.resolve(), status=status, request=record.request,
                   dataset=plan.get("dataset") or record.dataset_hint, created=record.created,
                   flow_run_id=record.flow_run_id, api_url=record.api_url, pending=pending)


def list_runs(folder: Path | None = None) -> list[RunInfo]:
    """Every run folder with a run.json, newest first."""
    folder = folder or runs_dir()
    if not folder.is_dir():
        return []
    runs = [info for p in folder.iterdir() if p.is_dir() and (info := run_info(p))]
    return sorted(runs, key=lambda r: (r.created, r.run_id), reverse=True)


def find_run(run_id: str, folder: Path | None = None) -> RunInfo | None:
    root = (folder or runs_dir()) / run_id
    return run_info(root) if root.is_dir() else None


def run_for_flow_run(flow_run_id: str, folder: Path | None = None) -> RunInfo | None:
    return next((r for r in list_runs(folder) if r.flow_run_id == str(flow_run_id)), None)


def waiting_runs(folder: Path | None = None) -> list[RunInfo]:
    """Runs whose flow is paused at a gate (gates/pending.json is there while it waits)."""
    return [r for r in list_runs(folder) if r.pending]


def stage_records(run: RunFolder) -> list[StageRecord]:
    records = []
    for file in sorted((run.root / "stages").glob("*.json")):
        try:
            records.append(run.read(f"stages/{file.name}", StageRecord))
        except ValueError:
            continue
    return sorted(records, key=lambda r: (r.started or "9999", r.stage))


def role_of(stage: str) -> str:
    return stage_role(stage) or "other"


def stage_seconds(record: StageRecord) -> float:
    """The stage's seconds; a running stage's count from its start until now."""
    if record.status == "running":
        live = progress.elapsed_s(record.started)
        if live is not None:
            return live
    return record.seconds


def stage_rows(run: RunFolder) -> list[dict]:
    """One row per stage record: role, status, attempts, actions, tokens, seconds, started, ended."""
    return [{"stage": r.stage, "role": role_of(r.stage), "status": r.status, "attempts": r.attempts,
             "actions": r.actions, "tokens": r.tokens, "seconds": round(stage_seconds(r), 1),
             "started": r.started, "ended": r.ended, "error": r.error} for r in stage_records(run)]


def role_rows(run: RunFolder) -> list[dict]:
    """Per role over all its stages: iterations (attempts), actions, tokens, seconds (a running stage's so far)."""
    table: dict[str, dict] = {}
    for row in stage_rows(run):
        if row["role"] == "other":
            continue
        total = table.setdefault(row["role"], {"role": row["role"], "iterations": 0, "actions": 0, "tokens": 0,
                                               "seconds": 0.0})
        total["iterations"] += row["attempts"]
        total["actions"] += row["actions"]
        total["tokens"] += row["tokens"]
        total["seconds"] = round(total["seconds"] + row["seconds"], 1)
    return [table[role] for role in ROLES if role in table]


@dataclass
class Now:
    """What a run is doing now: its running stage, seconds so far, tool calls so far and the training."""

    stage: str
    role: str
    seconds: float
    actions: int
    training: progress.Training | None = None
    script: ScriptProgress | None = None  # the training script's progress.json: caching, or epoch and batch

    def text(self) -> str:
        line = f"{self.stage}: {progress.duration_text(self.seconds)} so far, {self.actions} actions"
        line += f" · training {self.training.text()}" if self.training else ""
        return line + (f" · {self.script.text}" if self.script else "")


def running_actions(run: RunFolder, role: str) -> int | None:
    """Tool calls so far in the role's attempt that is still going (its trajectory is saved after every step)."""
    folder = run.root / "trajectories"
    files = sorted(folder.glob(f"{role}-*.json"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
    for file in reversed(files):
        trajectory = read_json(file)
        if isinstance(trajectory, dict) and trajectory.get("status") == "running":
            return len(trajectory.get("steps") or [])
    return None


def run_now(run: RunFolder) -> Now | None:
    """The running stage of the run, with the training's epoch, loss and ETA while the Model Trainer trains."""
    record = next((r for r in reversed(stage_records(run)) if r.status == "running"), None)
    if record is None:
        return None
    role = role_of(record.stage)
    actions = running_actions(run, role)
    started = progress.parse_time(record.started)
    training = progress.training_now(run.root, started) if role == "model_trainer" else None
    script = read_progress(run.workspace) if role == "model_trainer" else None
    if script is not None and started is not None and script.updated < started.timestamp():
        script = None  # an earlier round's
    return Now(stage=record.stage, role=role, seconds=stage_seconds(record),
               actions=record.actions + (actions or 0), training=training, script=script)


def timeline_rows(run: RunFolder) -> list[dict]:
    """Stages with a start time, for a Gantt-like chart; a running stage ends now."""
    rows = []
    for row in stage_rows(run):
        if not row["started"]:
            continue
        start = datetime.fromisoformat(row["started"])
        end = datetime.fromisoformat(row["ended"]) if row["ended"] else datetime.now(start.tzinfo)
        rows.append({**row, "start": start, "end": max(end, start)})
    return rows


def gate_question(run: RunFolder, gate: str) -> str:
    file = run.path(f"gates/{gate}.md")
    return file.read_text() if file.exists() else f"(the question of gate {gate} is not written yet)"


def decisions(run: RunFolder) -> list[dict]:
    folder = run.root / "decisions"
    return [d for f in sorted(folder.glob("*.json")) if (d := read_json(f))] if folder.is_dir() else []


def rounds(run: RunFolder) -> list[int]:
    folder = run.root / "report"
    found = []
    for sub in folder.glob("round-*") if folder.is_dir() else []:
        try:
            found.append(int(sub.name.split("-", 1)[1]))
        except ValueError:
            continue
    return sorted(found)


def round_summary(run: RunFolder, k: int) -> dict | None:
    return read_json(run.report_dir(k) / "summary.json")


def round_figures(run: RunFolder, k: int) -> dict[str, list[Path]]:
    """Round k's images: 'figures' (ROC, confusion, Dice, reliability) and 'saliency' (saliency-*.png)."""
    folder = run.report_dir(k)
    summary = round_summary(run, k) or {}
    figures = [run.root / f for f in summary.get("figures", []) if (run.root / f).exists()]
    if (folder / "reliability.png").exists():
        figures.append(folder / "reliability.png")
    return {"figures": figures, "saliency": sorted(folder.glob("saliency-*.png"))}


def metric_line(summary: dict) -> str:
    ci = summary.get("ci95")
    interval = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci and None not in ci else ""
    units = f", {summary['units_note']}" if summary.get("units_note") else ""
    return f"{summary['metric'].upper()} {summary['value']:.3f}{interval}{units}"


def train_log(run: RunFolder, k: int | None = None) -> list[dict]:
    """Training curve records: rounds/<k>/train_log.jsonl, else the workspace's current log.

    Both are the training script's output: read without following links, size capped, malformed
    lines skipped (dashboards/progress.py)."""
    names = [f"rounds/{k}/train_log.jsonl"] if k is not None else []
    names.append("workspace/train_log.jsonl")
    for name in names:
        found = progress.read_log(run.root, name)
        if found is not None:
            return found[0]
    return []


def trajectories(run: RunFolder) -> list[dict]:
    folder = run.root / "trajectories"
    files = sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
    return [t | {"file": f.name} for f in files if (t := read_json(f))]


def text_of(run: RunFolder, name: str) -> str | None:
    file = run.path(name)
    return file.read_text() if file.exists() else None


def json_of(run: RunFolder, name: str) -> Any:
    return read_json(run.path(name))


def external_reports(run: RunFolder) -> list[dict]:
    """The run's external validations (external/<name>/external_validation.json)."""
    from medbuilder.review.external import external_reports as reports

    return reports(run.root)


# ---------------------------------------------------------------- datacards


def registry():
    from medbuilder.protocol.registry import Registry

    return Registry(get_settings().datacards_dir)


def datacard_names() -> list[str]:
    """Names of the valid datacards (a broken card is left out here; the Datacards page shows it)."""
    from medbuilder.protocol.registry import DatacardError, load_card

    names = []
    for file in registry().files():
        try:
            names.append(load_card(file).name)
        except DatacardError:
            continue
    return sorted(set(names))


def datacard_files() -> list[tuple[Path, Any, str | None]]:
    """(file, card or None, error or None) per file in the datacards folder."""
    from medbuilder.protocol.registry import DatacardError, load_card

    rows = []
    for file in registry().files():
        try:
            rows.append((file, load_card(file), None))
        except DatacardError as err:
            rows.append((file, None, str(err)))
    return rows


def add_datacard(text: str) -> Path:
    """Validate YAML text with the registry's checks and save it as datacards/<name>.yaml.

    Raises DatacardError (file, field, problem, fix) when it does not validate; never overwrites."""
    import tempfile

    from medbuilder.protocol.registry import DatacardError, check_path, load_card

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else "new-card"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"{name}.yaml"
        file.write_text(text, encoding="utf-8")
        card = load_card(file)
        check_path(card, file, get_settings().data_dir)
        reg = registry()
        reg.folder.mkdir(parents=True, exist_ok=True)
        try:
            return reg.add(file)
        except FileExistsError as err:
            raise DatacardError(file, "name", str(err), "choose another name") from err


# ---------------------------------------------------------------- Prefect


class DeploymentMissing(RuntimeError):
    """The deployment build_model/build is not served (or the Prefect API cannot be reached)."""


def api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")


def ui_url(flow_run_id: str, api: str | None = None) -> str | None:
    """The Prefect UI page of a flow run (the UI is served next to the API)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    if not base:
        api = api or api_url()
        base = api[: -len("/api")] if api and api.endswith("/api") else api
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


HOW_TO_SERVE = ("Start the stack with `medbuilder up` (Prefect server and the build_model deployment), "
                "or serve the deployment yourself with `python -m medbuilder.flows.deployments`, "
                "and set PREFECT_API_URL for the dashboard to that server's API.")


def start_build(request: str, dataset: str | None = None, core: str | None = None) -> dict:
    """Start a run of the deployment build_model/build; returns flow run id, name and UI link.

    The request is checked first (the flow would reject an empty one). Gates are answered in
    the dashboard, so the run pauses at them (approve="prefect")."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from medbuilder.lifecycle.request import check_request

    text = check_request(request)
    parameters = {"request": text, "dataset": dataset or None, "approve": "prefect"}
    if core:
        parameters["core"] = core
    try:
        flow_run = run_deployment(name=DEPLOYMENT, parameters=parameters, timeout=0)
    except ObjectNotFound as err:
        raise DeploymentMissing(f"the deployment {DEPLOYMENT} does not exist on {api_url()}. {HOW_TO_SERVE}") from err
    except (OSError, RuntimeError) as err:
        if isinstance(err, DeploymentMissing):
            raise
        raise DeploymentMissing(f"the Prefect API at {api_url()} cannot start {DEPLOYMENT}: {err}. {HOW_TO_SERVE}") from err
    except Exception as err:  # httpx errors (connection refused) are not OSError
        if type(err).__module__.startswith(("httpx", "httpcore")):
            raise DeploymentMissing(f"the Prefect API at {api_url()} cannot be reached ({err}). {HOW_TO_SERVE}") from err
        raise
    return {"flow_run_id": str(flow_run.id), "name": flow_run.name, "url": ui_url(str(flow_run.id))}


def paused_flow_runs() -> tuple[list[dict], str | None]:
    """Flow runs Prefect shows as paused (a gate); returns (runs, error text if the API failed)."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        with get_client(sync_client=True) as client:  # the sync client sends sort and offset: give both
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=state), limit=100, offset=0,
                                          sort=FlowRunSort.EXPECTED_START_TIME_DESC)
    except Exception as err:  # the API may be down; the run folders still say which runs wait
        return [], f"{type(err).__name__}: {err}"
    return [{"flow_run_id": str(r.id), "name": r.name, "state": r.state.name if r.state else None,
             "key": (r.state.state_details.pause_key if r.state and r.state.state_details else None)}
            for r in found], None


def answer(run: RunFolder, values: dict, who: str) -> str:
    """Answer the run's pending gate as `who` (medbuilder.lifecycle.answer.answer_gate); returns the gate id."""
    from medbuilder.lifecycle.answer import answer_gate

    clean = {k: v for k, v in values.items() if v not in (None, "")}
    return answer_gate(run, {**clean, "who": who}, via="dashboard")
