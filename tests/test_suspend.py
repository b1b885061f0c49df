"""Gates that free their worker: a deployment's run suspends at a gate, a CLI run pauses in its live process.

Real Prefect server (the session's), the real deployments served by ``python -m medbuilder.flows.deployments``
(what `medbuilder up` runs), real CLI processes, 20 real Br35H images. The deployment's run stops at its dataset
gates (no training: the run goes on from its run folder whatever stage comes next); the CLI's path is the real
gate in a one-gate flow (tests/test_crash_recovery.py pauses a whole `medbuilder build` at its gates).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow_helpers import (alive, approve, descendants, flow_env, flow_run_of, kill_tree, pending_gate_is, state_names,
                          wait_for, wait_for_run)

REPO = Path(__file__).resolve().parent.parent
REQUEST = "Classify brain MRI slices as tumour or no tumour"
SERVE = [sys.executable, "-m", "medbuilder.flows.deployments"]
ATTEMPTS = ["data_engineer-1.json", "data_engineer-2.json", "task_manager-1.json"]
pytestmark = pytest.mark.slow


def _serve(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(SERVE, env={**os.environ, **env}, cwd=REPO, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _deployment_ready() -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name("build_model/build")
    except ObjectNotFound:
        return False
    return True


def _flow_pid(run_dir: Path, timeout_s: float = 30) -> int:
    """The flow process's pid from process.json, which the flow writes just after it makes the run folder."""
    deadline = time.monotonic() + timeout_s
    while not (run_dir / "process.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    return json.loads((run_dir / "process.json").read_text())["pid"]


def _suspended_at(run_dir: Path, flow_run_id: str, gate: str) -> bool:
    return pending_gate_is(run_dir, gate) and flow_run_of(flow_run_id).state.name == "Suspended"


def _assert_suspended_without_a_process(run_dir: Path, flow_run_id: str, gate: str, serve: subprocess.Popen,
                                        log: Path) -> int:
    """The flow run is Suspended at `gate`, its flow process has exited and the serve process runs nothing."""
    pid = _flow_pid(run_dir)
    wait_for(lambda: not alive(pid), 30, f"the flow process {pid} to exit after suspending", log)
    wait_for(lambda: not descendants(serve.pid), 30, "the serve process to hold no flow run process", log)
    assert serve.poll() is None  # the serve process lives on, its slot free
    state = flow_run_of(flow_run_id).state
    assert (state.type.value, state.state_details.pause_key) == ("PAUSED", gate)
    assert state.state_details.pause_reschedule  # Suspended: the answer reschedules it on a worker
    pending = json.loads((run_dir / "gates" / "pending.json").read_text())
    assert pending == {**pending, "gate": gate, "flow_run_id": flow_run_id, "suspended": True}
    assert json.loads((run_dir / "run.json").read_text())["status"] == "suspended"
    return pid


def test_a_deployment_run_suspends_frees_its_process_and_resumes_from_its_run_folder(prefect_api, br35h_small):
    """dataset-1 is answered (a correction: the inferred layout as it is) while no serve process runs; the run
    goes on from its run folder when one starts again: the Data Engineer's second round runs, the finished
    stages do not, and the run suspends again at dataset-2; rejected there, it completes."""
    from prefect.deployments import run_deployment

    env = {**flow_env(br35h_small, prefect_api), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    first_log, second_log = br35h_small / "serve-1.log", br35h_small / "serve-2.log"
    started = time.monotonic()
    serve = _serve(env, first_log)
    try:
        wait_for(_deployment_ready, 120, "deployment build_model/build", first_log)
        flow_run_id = str(run_deployment("build_model/build", parameters={"request": REQUEST, "approve": "prefect"},
                                         timeout=0).id)
        run_dir = wait_for_run(br35h_small / "runs", first_log, 180)
        assert _flow_pid(run_dir) in descendants(serve.pid)  # the serve process started the flow process
        wait_for(lambda: _suspended_at(run_dir, flow_run_id, "dataset-1"), 240, "the dataset gate's suspension",
                 first_log)
        pids = [_assert_suspended_without_a_process(run_dir, flow_run_id, "dataset-1", serve, first_log)]
    finally:
        kill_tree(serve)
    suspended_s = time.monotonic() - started

    # no serve process or worker is left to run it
    answered = approve(run_dir.name, env, "--action", "correct", "--layout", str(run_dir / "layout.json"),
                       "--who", "dr-a")
    assert answered.returncode == 0, answered.stderr
    state = flow_run_of(flow_run_id).state
    assert (state.type.value, state.name) == ("SCHEDULED", "Resuming")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "suspended"  # nothing ran it yet

    serve = _serve(env, second_log)
    try:
        wait_for(lambda: _suspended_at(run_dir, flow_run_id, "dataset-2"), 240, "the second round's suspension",
                 second_log)
        pids.append(_assert_suspended_without_a_process(run_dir, flow_run_id, "dataset-2", serve, second_log))
        audited = (run_dir / "metadata_audit.json").stat().st_mtime_ns
        answered = approve(run_dir.name, env, "--action", "reject", "--reason", "test run", "--who", "dr-b")
        assert answered.returncode == 0, answered.stderr
        wait_for(lambda: flow_run_of(flow_run_id).state.is_final(), 120, "the run to finish", second_log)
        pids.append(_flow_pid(run_dir))
    finally:
        kill_tree(serve)

    assert flow_run_of(flow_run_id).state.is_completed()
    names = state_names(flow_run_id)
    assert names.count("Suspended") == names.count("Resuming") == 2 and names[-1] == "Completed", names
    assert "Paused" not in names, names
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["status"], record["flow_run_id"]) == ("rejected", flow_run_id)
    assert len(set(pids)) == 3  # three flow processes ran the one flow run, each from the top
    stages = {p.stem: json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")}
    assert {name: (s["status"], s["attempts"]) for name, s in stages.items()} == {
        name: ("completed", 1) for name in ("task_manager", "prepare_data", "data_engineer", "data_engineer-2")}
    assert sorted(p.name for p in (run_dir / "trajectories").iterdir()) == ATTEMPTS
    assert (run_dir / "metadata_audit.json").stat().st_mtime_ns == audited  # not redone once dataset-2 was asked
    first = json.loads((run_dir / "decisions" / "dataset-1.json").read_text())
    second = json.loads((run_dir / "decisions" / "dataset-2.json").read_text())
    assert (first["action"], first["who"], first["via"]) == ("correct", "dr-a", "cli")
    assert (second["action"], second["reason"], second["who"], second["via"]) == ("reject", "test run", "dr-b", "cli")
    assert not (run_dir / "gates" / "pending.json").exists() and not (run_dir / "interruptions.json").exists()
    print(f"\nsuspended at dataset-1 after {suspended_s:.1f} s; whole test {time.monotonic() - started:.1f} s")


ONE_GATE = """
import sys
from prefect import flow
from prefect.context import get_run_context
from prefect.settings import PREFECT_API_URL
from medbuilder.flows.gates import ask
from medbuilder.lifecycle.open import open_run
from medbuilder.settings import get_settings

@flow
def one_gate() -> str:
    flow_run_id = str(get_run_context().flow_run.id)
    run, _, _ = open_run(get_settings(), sys.argv[1], None, "offline", "prefect", None, flow_run_id,
                         PREFECT_API_URL.value().rstrip("/"))
    return ask(run, "review-0", "## Review\\nAUROC 0.9", "prefect", timeout_s=120, poll_s=1).model_dump_json()

print("DECISION", one_gate())
"""


def test_a_run_started_without_a_deployment_pauses_in_its_live_process(prefect_api, data_env):
    """The CLI's path (`medbuilder build` runs the flow in its own process): the real gate, in a flow run with no
    deployment, pauses and polls; `medbuilder approve` resumes that same process."""
    from medbuilder.lifecycle.recovery import flow_process
    from medbuilder.protocol.run_folder import RunFolder

    env = flow_env(data_env, prefect_api)
    log = data_env / "gate.log"
    proc = subprocess.Popen([sys.executable, "-c", ONE_GATE, REQUEST], env={**os.environ, **env}, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        run_dir = wait_for_run(data_env / "runs", log)
        wait_for(lambda: pending_gate_is(run_dir, "review-0"), 120, "the gate", log)
        flow_run_id = json.loads((run_dir / "gates" / "pending.json").read_text())["flow_run_id"]
        wait_for(lambda: flow_run_of(flow_run_id).state.is_paused(), 60, "the paused flow run", log)
        flow_run = flow_run_of(flow_run_id)
        assert flow_run.deployment_id is None
        assert (flow_run.state.name, flow_run.state.state_details.pause_reschedule) == ("Paused", False)
        assert proc.poll() is None and flow_process(RunFolder(run_dir))["pid"] == proc.pid  # it waits, alive
        assert "suspended" not in json.loads((run_dir / "gates" / "pending.json").read_text())
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
        answered = approve(run_dir.name, env, "--action", "reject", "--reason", "wrong data", "--who", "dr-c")
        assert answered.returncode == 0, answered.stderr
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    names = state_names(flow_run_id)
    assert "Paused" in names and "Suspended" not in names and names[-1] == "Completed", names
    decision = json.loads(log.read_text().split("DECISION ", 1)[1])
    assert (decision["action"], decision["reason"], decision["who"], decision["via"]) == \
        ("reject", "wrong data", "dr-c", "cli")
    assert not (run_dir / "gates" / "pending.json").exists()
