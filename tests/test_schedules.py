"""Schedules, the datacard trigger and gate notifications on one real stack (no mocks).

One module-scoped stack, started with the same commands as `medbuilder up --only prefect|serve|watch`: a real
Prefect server (SQLite; its scheduler loop lowered to seconds), the real deployments served by
``python -m medbuilder.flows.deployments`` and the real datacard watcher. Around it: a stdlib HTTP webhook
receiver on 127.0.0.1, the channel of the gate notifications (``medbuilder/stack/notify.py``).

- ``reevaluate_delivered/nightly`` gets a cron (MEDBUILDER_NIGHTLY_CRON, 6 fields, the seconds last) that fires
  once, 35 s after the serve process starts: the SERVER'S scheduler must create that run (auto-scheduled,
  created by the schedule, first state Scheduled), the serve process must run it to Completed, and it must
  write reevaluations/<date>.json in a delivered run folder (a real model trained for one epoch).
- a new datacard: `medbuilder watch` emits the event, the automation starts ``build_model/on-datacard``, the
  serve process runs the build to its dataset gate (flow run Suspended, pause key dataset-1), and the gate's
  automation POSTs to the webhook, naming the flow run and the gate.

The datacard test runs while the nightly cron is still due, so the module takes about as long as its slowest
part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from medbuilder.stack.up import free_port, http_ok, read_stack

sys.path.insert(0, str(Path(__file__).parent))
import delivery_fixtures  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STACK_CLI = [sys.executable, "-m", "medbuilder.cli.stack"]  # the same commands as `medbuilder up|down`
NIGHTLY_LEAD_S = 35  # the cron fires this long after the serve process is started (it was ready after ~9 s)

pytestmark = pytest.mark.slow


# --- the receivers ---------------------------------------------------------------------------------------

class WebhookReceiver:
    """A stdlib HTTP server on 127.0.0.1 that records every POST (path, headers, JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                received.append({"path": self.path, "headers": dict(self.headers), "json": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/medbuilder-gate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- the stack -------------------------------------------------------------------------------------------

def _cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*STACK_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait(predicate, timeout_s: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail}")


def cron_once(when: datetime) -> str:
    """A 6-field cron (seconds last, as Prefect's croniter reads it) that fires at `when` (UTC) and then only a
    year later."""
    return f"{when.minute} {when.hour} {when.day} {when.month} * {when.second}"


def _delivered_run(base: Path):
    from medbuilder.delivery import export_bundle, render_card
    from medbuilder.protocol.artifacts import RunRecord

    run, _ = delivery_fixtures.make_run(base, "diagnosis")  # also lays Br35H out under base/data/br35h
    export_bundle(run.root, 0, render_card(run.root, 0))
    run.write("run.json", RunRecord(run_id=run.run_id, request=delivery_fixtures.REQUESTS["diagnosis"],
                                    core="offline", approve="auto", status="delivered"))
    return run


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("schedules")
    for name in ("datacards", "runs", "data"):
        (base / name).mkdir()
    state, port = base / "state", free_port()
    hook = WebhookReceiver()
    env = {**os.environ, "MEDBUILDER_DATACARDS_DIR": str(base / "datacards"),
           "MEDBUILDER_RUNS_DIR": str(base / "runs"), "MEDBUILDER_DATA_DIR": str(base / "data"),
           "MEDBUILDER_ECHO_SCRIPTS": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # the server's scheduler loops (defaults 60 s and 5 s) and the runner's polls (default 10 s)
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "MEDBUILDER_NOTIFY_WEBHOOK_URL": hook.url, "MEDBUILDER_DASHBOARD_URL": "http://127.0.0.1:8599"}
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    server = subprocess.Popen([*STACK_CLI, "up", "--only", "prefect", "--state", str(state),
                               "--prefect-port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        delivered = _delivered_run(base)  # a real model, trained while the server starts
        out, _ = server.communicate(timeout=240)
        assert server.returncode == 0, out
        api = f"http://127.0.0.1:{port}/api"
        fire = (datetime.now(timezone.utc) + timedelta(seconds=NIGHTLY_LEAD_S)).replace(microsecond=0)
        env["MEDBUILDER_NIGHTLY_CRON"] = cron_once(fire)
        served = _cli(["up", "--only", "serve", "--state", str(state)], env)
        assert served.returncode == 0, served.stdout + served.stderr
        ready = datetime.now(timezone.utc)
        assert ready < fire - timedelta(seconds=3), (
            f"the serve process was ready at {ready}, too late for the cron's fire time {fire}: raise NIGHTLY_LEAD_S")
        watched = _cli(["up", "--only", "watch", "--state", str(state), "--datacards", str(base / "datacards"),
                        "--interval", "1"], env)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        print(f"stack up in {time.monotonic() - started:.1f} s; nightly cron {env['MEDBUILDER_NIGHTLY_CRON']!r} "
              f"fires at {fire:%H:%M:%S} UTC, {(fire - ready).total_seconds():.0f} s after serve was ready")
        auth = (state / "prefect" / "api_auth").read_text().strip()
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            yield {"base": base, "state": state, "api": api, "fire": fire, "cron": env["MEDBUILDER_NIGHTLY_CRON"],
                   "delivered": delivered, "hook": hook, "served_stdout": served.stdout,
                   "logs": {name: Path(part["log"]) for name, part in read_stack(state)["parts"].items()}}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        stopped = _cli(["down", "--state", str(state), "--grace", "10"], env)
        hook.close()
        print(f"stack down; module {time.monotonic() - started:.1f} s")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not http_ok(f"http://127.0.0.1:{port}/api/health")


def _runs_of(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                 limit=20, sort=FlowRunSort.EXPECTED_START_TIME_ASC)


# --- the tests (the datacard one first: it runs while the nightly cron is still due) ---------------------

def test_new_datacard_builds_to_its_gate_and_the_gate_notifies(stack):
    from prefect.client.orchestration import get_client

    from medbuilder.flows.deployments import TRIGGER_NAME
    from medbuilder.stack.notify import AUTOMATION_NAME, WEBHOOK_BLOCK

    assert (f"gate notifications: {WEBHOOK_BLOCK} on prefect.flow-run.Paused and prefect.flow-run.Suspended"
            in stack["served_stdout"])
    card = yaml.safe_load((REPO / "datacards" / "br35h.yaml").read_text())
    card["name"] = "br35h-copy"  # the same images (base/data/br35h), a new card
    (stack["base"] / "datacards" / "br35h-copy.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        on_card = client.read_deployment_by_name("build_model/on-datacard")
        (trigger,) = client.read_automations_by_name(TRIGGER_NAME)
        (notify,) = client.read_automations_by_name(AUTOMATION_NAME)
        assert notify.trigger.expect == {"prefect.flow-run.Paused", "prefect.flow-run.Suspended"}
        assert len(notify.actions) == 1

        (run,) = _wait(lambda: _runs_of(client, on_card.id), 60, "a flow run of build_model/on-datacard",
                       stack["logs"]["watch"])
        assert run.created_by.type == "AUTOMATION" and run.created_by.id == trigger.id
        assert run.parameters["dataset"] == "br35h-copy" and run.parameters["approve"] == "prefect"
        assert run.parameters["request"] == ("Classify brain MRI images as no or yes (2D, dataset br35h-copy)")

        def paused():
            state = client.read_flow_run(run.id).state
            assert not state.is_final(), f"the triggered build ended before its gate: {state}"
            return state if state.is_paused() else None

        state = _wait(paused, 180, "the triggered build to suspend at its dataset gate", stack["logs"]["serve"])
        print(f"triggered run {run.name} paused at {state.state_details.pause_key} after "
              f"{time.monotonic() - started:.1f} s")
        assert state.name == "Suspended" and state.state_details.pause_key == "dataset-1"  # a deployment's run
        names = [s.name for s in client.read_flow_run_states(run.id)]
        assert "Running" in names, names  # the serve process ran it
    (run_dir,) = [p for p in (stack["base"] / "runs").iterdir() if (p / "gates" / "pending.json").exists()]
    pending = json.loads((run_dir / "gates" / "pending.json").read_text())
    assert (pending["gate"], pending["flow_run_id"]) == ("dataset-1", str(run.id))

    hook = stack["hook"]
    (post,) = _wait(lambda: [p for p in hook.received if str(run.id) in str(p["json"])], 60,
                    "the gate's webhook POST", stack["logs"]["prefect"])
    assert post["path"] == "/medbuilder-gate" and post["headers"]["Content-Type"] == "application/json"
    body = post["json"]["body"]
    assert post["json"]["subject"] == f"medbuilder: gate dataset-1 of {run.name} is waiting"
    assert "Gate: dataset-1" in body and f"Flow run: {run.name} ({run.id})" in body
    assert f"Prefect UI: {stack['api'][:-4]}/runs/flow-run/{run.id}" in body
    assert "Dashboard: http://127.0.0.1:8599" in body and "dataset br35h-copy" in body

    assert len([p for p in hook.received if str(run.id) in str(p["json"])]) == 1  # one Suspended event, one POST


def test_the_servers_scheduler_runs_the_nightly_reevaluation(stack):
    from prefect.client.orchestration import get_client

    delivered = stack["delivered"]
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("reevaluate_delivered/nightly")
        (schedule,) = nightly.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (stack["cron"], "UTC", True)
        (run,) = _wait(lambda: _runs_of(client, nightly.id), max(30.0, _until(stack["fire"])),
                       "the server's scheduler to create the nightly run", stack["logs"]["prefect"])
        # made by the scheduler from the deployment's schedule, not by a client
        assert run.auto_scheduled and "auto-scheduled" in run.tags
        assert run.created_by.type == "SCHEDULE" and run.created_by.id == schedule.id
        assert run.expected_start_time == stack["fire"]
        assert client.read_flow_run_states(run.id)[0].name == "Scheduled"

        final = _wait(lambda: (s := client.read_flow_run(run.id).state).is_final() and s,
                      _until(stack["fire"]) + 120, "the nightly run to finish", stack["logs"]["serve"])
        assert final.is_completed(), final
        names = [s.name for s in client.read_flow_run_states(run.id)]
        assert names[0] == "Scheduled" and "Running" in names and names[-1] == "Completed", names
        started = [s.timestamp for s in client.read_flow_run_states(run.id) if s.name == "Running"][0]
        assert started >= stack["fire"] - timedelta(seconds=1)
    assert str(run.id) in stack["logs"]["serve"].read_text()  # the serve process's runner took it
    (written,) = (delivered.root / "reevaluations").glob("*.json")
    result = json.loads(written.read_text())
    assert written.stem == started.astimezone(timezone.utc).date().isoformat()
    assert datetime.fromisoformat(result["when"]) >= stack["fire"] - timedelta(seconds=1)
    assert result["status"] == "ok" and result["metric"] == "auroc" and result["n_found"] == result["n_test"] > 0
    assert abs(result["value"] - delivered.read_json("rounds/0/metrics.json")["value"]) < 0.01
    print(f"nightly run {run.name} completed; {written.relative_to(stack['base'])}: {result['value']}")


def _until(when: datetime) -> float:
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds()) + 15
