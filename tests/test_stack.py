"""`medbuilder up | down | status | watch`: real processes, a real Prefect server, no mocks."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from medbuilder.proctree import running, tree
from medbuilder.stack.up import free_port, http_ok, read_stack
from medbuilder.stack.watch import Change, Watcher, diff, snapshot_files, snapshot_tree

REPO = Path(__file__).resolve().parent.parent
STACK_CLI = [sys.executable, "-m", "medbuilder.cli.stack"]  # the same commands as `medbuilder up|down|status`


# --- the watcher's snapshot diff (fast) ------------------------------------------------------------------

def test_snapshot_diff_finds_added_modified_removed(tmp_path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.yaml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("not a card")
    before = snapshot_files(tmp_path)
    assert set(before) == {"a.yaml", "b.yaml"}
    (tmp_path / "a.yaml").write_text("x: 22\n")               # size changes
    os.utime(tmp_path / "b.yaml", ns=(1, 1))                   # only the mtime changes
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "b.yaml").rename(tmp_path / "d.yml")
    after = snapshot_files(tmp_path)
    assert diff(before, after) == [Change("a.yaml", "modified"), Change("b.yaml", "removed"),
                                   Change("c.json", "added"), Change("d.yml", "added")]
    assert diff(after, snapshot_files(tmp_path)) == []


def test_watcher_emits_for_new_and_changed_cards_only(tmp_path):
    cards, data = tmp_path / "cards", tmp_path / "data"
    cards.mkdir()
    (data / "br35h-copy" / "yes").mkdir(parents=True)
    card = yaml.safe_load((REPO / "datacards" / "br35h.yaml").read_text())
    card.update(name="br35h-copy", path="br35h-copy")
    (cards / "old.yaml").write_text(yaml.safe_dump({**card, "name": "old"}))
    sent, lines = [], []
    watcher = Watcher(cards, data, send=lambda resource, payload: sent.append((resource, payload)), echo=lines.append)
    assert watcher.poll() == []                                 # what was there at the start is the baseline
    (cards / "br35h-copy.yaml").write_text(yaml.safe_dump(card))
    (cards / "broken.yaml").write_text("name: [unclosed\n")
    (cards / "old.yaml").unlink()
    payloads = watcher.poll()
    assert [p["dataset"] for p in payloads] == ["br35h-copy"]
    resource, payload = sent[0]
    assert resource["prefect.resource.id"] == "medbuilder.datacard.br35h-copy"
    assert payload["change"] == "added" and payload["file"] == str(cards / "br35h-copy.yaml")
    assert payload["tasks"] == ["diagnosis", "anomaly_detection"]
    assert payload["request"].startswith("Classify brain MRI images as no or yes")
    assert any("broken.yaml" in line and "not valid" in line for line in lines)
    assert any("old.yaml removed" in line for line in lines)
    before = snapshot_tree(data)
    (data / "br35h-copy" / "yes" / "y0.jpg").write_bytes(b"\xff\xd8")
    assert diff(before, snapshot_tree(data)) == [Change("br35h-copy", "modified")]
    payloads = watcher.poll()                                   # a changed data folder: its datacard's event
    assert [(p["dataset"], p["change"]) for p in payloads] == [("br35h-copy", "data-modified")]


# --- the whole stack (slow) ------------------------------------------------------------------------------

def _cli(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*STACK_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.mark.slow
def test_up_deployments_trigger_and_down(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelled, Cancelling

    for name in ("datacards", "runs", "data"):
        (tmp_path / name).mkdir()
    state, port, dashboard_port = tmp_path / "state", free_port(), free_port()
    env = {**os.environ, "MEDBUILDER_DATACARDS_DIR": str(tmp_path / "datacards"),
           "MEDBUILDER_RUNS_DIR": str(tmp_path / "runs"), "MEDBUILDER_DATA_DIR": str(tmp_path / "data"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    result = _cli(["up", "--state", str(state), "--prefect-port", str(port), "--dashboard-port", str(dashboard_port),
                   "--interval", "1"], env)
    stack = read_stack(state)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        api = f"http://127.0.0.1:{port}/api"
        assert f"Prefect UI   http://127.0.0.1:{port}" in result.stdout and api in result.stdout
        assert set(stack["parts"]) == {"prefect", "serve", "dashboard", "watch"} and stack["api_url"] == api
        assert http_ok(f"{api}/health") and f"http://127.0.0.1:{dashboard_port}" in result.stdout
        assert http_ok(f"http://127.0.0.1:{dashboard_port}/_stcore/health")
        assert (state / "prefect" / "prefect.db").is_file() and (state / ".gitignore").read_text().endswith("*\n")
        print(f"up in {time.monotonic() - started:.1f} s")

        again = _cli(["up", "--state", str(state), "--prefect-port", str(free_port()), "--no-dashboard"], env)
        assert again.returncode == 2 and "already up: prefect, serve, watch" in again.stderr
        busy = _cli(["up", "--state", str(tmp_path / "other"), "--only", "prefect", "--prefect-port", str(port)], env)
        assert busy.returncode == 2 and f"port {port} (Prefect server) is in use" in busy.stderr
        assert "--prefect-port" in busy.stderr
        shown = _cli(["status", "--state", str(state)], env)
        assert shown.returncode == 0 and "prefect" in shown.stdout and "healthy" in shown.stdout, shown.stdout

        # the API answers only with the credentials `up` made (0600 in the state folder)
        auth_file = state / "prefect" / "api_auth"
        assert oct(auth_file.stat().st_mode & 0o777) == "0o600" and str(auth_file) in result.stdout
        auth = auth_file.read_text().strip()
        for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"medbuilder:wrong").decode()}):
            request = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json", **headers})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}), \
                get_client(sync_client=True) as client:
            build = client.read_deployment_by_name("build_model/build")
            assert build.parameters == {"request": "", "dataset": None, "core": None, "approve": "prefect"}
            assert {"request", "dataset", "core", "approve"} <= set(build.parameter_openapi_schema["properties"])
            assert build.description
            nightly = client.read_deployment_by_name("reevaluate_delivered/nightly")
            (schedule,) = nightly.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
            on_card = client.read_deployment_by_name("build_model/on-datacard")
            (automation,) = client.read_resource_related_automations(f"prefect.deployment.{on_card.id}")
            assert automation.trigger.expect == {"medbuilder.datacard.changed"}

            # a new datacard (a renamed copy of br35h) in the watched folder -> event -> automation -> run
            card = yaml.safe_load((REPO / "datacards" / "br35h.yaml").read_text())
            card["name"] = "br35h-copy"
            (tmp_path / "datacards" / "br35h-copy.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
            dep_filter = DeploymentFilter(id=DeploymentFilterId(any_=[on_card.id]))

            def triggered():
                return client.read_flow_runs(deployment_filter=dep_filter, limit=10,
                                             sort=FlowRunSort.EXPECTED_START_TIME_DESC)

            (run,) = _wait(triggered, 90, "a flow run of build_model/on-datacard")
            print(f"triggered run {run.id} after {time.monotonic() - started:.1f} s, state {run.state_type}")
            assert run.created_by is not None and run.created_by.type == "AUTOMATION"
            assert run.created_by.id == automation.id
            assert run.created_by.display_value == automation.name
            assert run.parameters["dataset"] == "br35h-copy" and run.parameters["approve"] == "prefect"
            assert run.parameters["request"].startswith("Classify brain MRI images as no or yes")

            # cancel it (it would wait at the dataset gate anyway); a run still pending (its process starting)
            # is left to start first: Cancelling it then raced the start on a busy machine and stayed unanswered
            state_now = _wait(lambda: (s := client.read_flow_run(run.id).state) and not s.is_pending() and s, 120,
                              "the triggered run to leave Pending")
            client.set_flow_run_state(run.id, Cancelled() if state_now.is_scheduled() else Cancelling(), force=True)
            final = _wait(lambda: (s := client.read_flow_run(run.id).state).is_final() and s, 90,
                          "the triggered run to be cancelled")
            assert final.is_cancelled(), final
        watch_log = Path(stack["parts"]["watch"]["log"]).read_text()
        assert "emitted medbuilder.datacard.changed for medbuilder.datacard.br35h-copy" in watch_log
    finally:
        stack = read_stack(state) or stack or {"parts": {}}
        recorded = {name: set(tree(part["pid"])) for name, part in stack["parts"].items()}
        stopped = _cli(["down", "--state", str(state), "--grace", "10"], env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not (state / "stack.json").exists()
    left = [pid for pids in recorded.values() for pid in pids if running(pid)]
    in_groups = [pid for part in stack["parts"].values() for pid in tree(part["pgid"], include_root=False)]
    assert not left and not in_groups, (left, in_groups)
    assert not http_ok(f"http://127.0.0.1:{port}/api/health")
    assert not http_ok(f"http://127.0.0.1:{dashboard_port}/_stcore/health")
    assert _cli(["status", "--state", str(state)], env).returncode == 1
    print(f"whole test {time.monotonic() - started:.1f} s")


# --- the nightly re-evaluation (a real delivered diagnosis model) ---------------------------------------

@pytest.mark.slow
def test_reevaluate_delivered_writes_the_metric_and_flags_a_drop(tmp_path, prefect_api, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    import delivery_fixtures

    from medbuilder.delivery import export_bundle, render_card
    from medbuilder.flows.reevaluate import reevaluate_delivered
    from medbuilder.protocol.artifacts import RunRecord

    run, _ = delivery_fixtures.make_run(tmp_path, "diagnosis")
    export_bundle(run.root, 0, render_card(run.root, 0))
    run.write("run.json", RunRecord(run_id=run.run_id, request="Tell me whether a brain MRI slice shows a tumour.",
                                    core="offline", approve="auto", status="delivered"))
    waiting = tmp_path / "runs" / "run-waiting"                  # not delivered: left alone
    waiting.mkdir()
    (waiting / "run.json").write_text(RunRecord(run_id="run-waiting", request="x", core="offline",
                                                approve="prefect", status="running").model_dump_json())
    monkeypatch.setenv("MEDBUILDER_RUNS_DIR", str(tmp_path / "runs"))

    (result,) = reevaluate_delivered(runs_dir=str(tmp_path / "runs"))
    delivered = run.read_json("rounds/0/metrics.json")["value"]
    assert result["status"] == "ok" and result["metric"] == "auroc" and result["n_found"] == result["n_test"] > 0
    assert abs(result["value"] - delivered) < 0.01 and result["flag"] is None
    (written,) = (run.root / "reevaluations").glob("*.json")
    assert written.stem == time.strftime("%Y-%m-%d", time.gmtime())

    metrics = run.read_json("rounds/0/metrics.json")          # pretend the delivered model scored higher
    run.write("rounds/0/metrics.json", {**metrics, "value": result["value"] + 0.2})
    (again,) = reevaluate_delivered(runs_dir=str(tmp_path / "runs"))
    assert again["flag"] == "drop" and again["change"] < -0.05
    assert not (waiting / "reevaluations").exists()
