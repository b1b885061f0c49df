"""Scale: a Prefect server on a real PostgreSQL, a process work pool with two workers, four build_model runs
submitted at once, and a global concurrency limit of one training at a time. Real processes, real training."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from medbuilder.proctree import running, tree
from medbuilder.stack.up import free_port, http_ok, port_free, read_stack

pytestmark = pytest.mark.slow

STACK_CLI = [sys.executable, "-m", "medbuilder.cli.stack"]  # the same commands as `medbuilder up|down`
REQUEST = "Classify brain MRI slices as tumour or no tumour"
RUNS, WORKERS, SLOTS = 4, 2, 1


def _cli(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*STACK_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _env(base: Path) -> dict:
    env = {**os.environ, "MEDBUILDER_DATA_DIR": str(base / "data"), "MEDBUILDER_RUNS_DIR": str(base / "runs"),
           "MEDBUILDER_TRAIN_TIME_LIMIT_S": "3", "MEDBUILDER_ECHO_SCRIPTS": "false",
           "MEDBUILDER_TRAINING_SLOTS": str(SLOTS), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for name in ("PREFECT_API_URL", "MEDBUILDER_TRAINING_LIMIT"):
        env.pop(name, None)
    return env


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at the same instant (one that ends as another starts: not both)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, step in events:  # at equal times the end (-1) sorts before the start (+1)
        open_now += step
        peak = max(peak, open_now)
    return peak


def test_most_at_once_counts_overlaps_only():
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]
    assert most_at_once([(t[0], t[2]), (t[2], t[4]), (t[4], t[6])]) == 1      # back to back
    assert most_at_once([(t[0], t[3]), (t[2], t[4]), (t[1], t[5])]) == 3
    assert most_at_once([(t[0], t[5]), (t[1], t[2]), (t[3], t[4])]) == 2


def _training_interval(run_root: Path) -> tuple[datetime, datetime]:
    import json

    record = json.loads((run_root / "stages" / "model_trainer.json").read_text())
    assert record["status"] == "completed" and record["attempts"] == 1, record
    return datetime.fromisoformat(record["started"]), datetime.fromisoformat(record["ended"])


def _submit_and_wait(api: str, auth: str, timeout_s: float) -> list:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from medbuilder.stack.pool import POOL_DEPLOYMENT

    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
        ids = [run_deployment(POOL_DEPLOYMENT, timeout=0,
                              parameters={"request": REQUEST, "dataset": "br35h", "approve": "auto"}).id
               for _ in range(RUNS)]
        deadline = time.monotonic() + timeout_s
        with get_client(sync_client=True) as client:
            while True:
                runs = [client.read_flow_run(i) for i in ids]
                if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                    return runs
                time.sleep(2)


def _leftovers(stack: dict, recorded: dict[str, set[int]], pg_dir: str) -> list[int]:
    """Processes of the stack still alive: recorded members, their groups and sessions, postgres backends."""
    import psutil

    left = {pid for pids in recorded.values() for pid in pids if running(pid)}
    left |= {pid for part in stack["parts"].values() for pid in tree(part["pgid"], include_root=False)}
    for proc in psutil.process_iter(["cmdline"]):
        if pg_dir in " ".join(proc.info["cmdline"] or []):
            left.add(proc.pid)
    return sorted(left)


def test_four_runs_on_postgres_two_workers_one_training_at_a_time(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from medbuilder.dashboards import data as dashboard
    from medbuilder.protocol.datasets import prepare
    from medbuilder.stack import postgres

    started = time.monotonic()
    prepare("br35h", tmp_path / "data" / "br35h", limit=5, echo=lambda *_: None)
    (tmp_path / "runs").mkdir()
    env, state = _env(tmp_path), tmp_path / "state"
    port, pg_port = free_port(), free_port()
    result = _cli(["up", "--state", str(state), "--database", "postgres", "--postgres-port", str(pg_port),
                   "--prefect-port", str(port), "--workers", str(WORKERS), "--worker-limit", "2",
                   "--no-serve", "--no-dashboard", "--no-watch"], env)
    stack = read_stack(state) or {"parts": {}}
    pg_dir = stack["parts"].get("postgres", {}).get("data_dir") or str(postgres.data_dir_for(state / "postgres"))
    api = f"http://127.0.0.1:{port}/api"
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(stack["parts"]) == {"postgres", "prefect", "worker-1", "worker-2"}, stack["parts"]
        assert f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/prefect" in result.stdout
        assert "at most 1 at a time (global concurrency limit medbuilder-training)" in result.stdout
        up_s = time.monotonic() - started

        auth = (state / "prefect" / "api_auth").read_text().strip()
        runs = _submit_and_wait(api, auth, timeout_s=480)  # generous: a loaded machine is slow
        runs_s = time.monotonic() - started - up_s
        assert [r.state.type.value for r in runs] == ["COMPLETED"] * RUNS, [(r.name, r.state) for r in runs]
        ids = {str(r.id) for r in runs}

        # the rows are in PostgreSQL
        secret = (state / "postgres.secret").read_text().strip()
        assert oct((state / "postgres.secret").stat().st_mode & 0o777) == "0o600"
        with pytest.raises(postgres.PostgresError, match="password authentication failed|no password supplied"):
            postgres.query(pg_port, "SELECT 1")  # no trust authentication: a password or nothing
        assert oct(Path(pg_dir).stat().st_mode & 0o777) == "0o700"  # the unix socket's folder
        rows = postgres.query(pg_port, "SELECT id, state_type FROM flow_run", password=secret)
        assert sorted(rows) == sorted([i, "COMPLETED"] for i in ids), rows

        # both workers ran runs (each may run 2 at a time); a worker that loses the race for a run logs
        # "Aborted submission", the one that wins "Flow run '<name>' submitted to infrastructure"
        logs = [Path(stack["parts"][f"worker-{k}"]["log"]).read_text() for k in range(1, WORKERS + 1)]
        names = {r.name for r in runs}
        ran = [{n for n in names if f"Flow run '{n}' submitted to infrastructure" in log} for log in logs]
        assert all(ran) and sorted(n for taken in ran for n in taken) == sorted(names), ran

        # the dashboard's Runs page lists the four delivered runs, from their run folders
        listed = dashboard.list_runs(tmp_path / "runs")
        assert {r.flow_run_id for r in listed} == ids and {r.status for r in listed} == {"delivered"}
        assert all((r.root / "bundle").is_dir() and (r.root / "model_card.md").is_file() for r in listed)

        # one training at a time, while the runs themselves overlapped
        trainings = [_training_interval(r.root) for r in listed]
        flows = [(r.start_time, r.end_time) for r in runs]
        assert most_at_once(trainings) == SLOTS, trainings
        assert most_at_once(flows) >= 2, flows
        by_flow_run = {str(r.id): (r.start_time, r.end_time) for r in runs}
        busy_while_training = [(a.run_id, b.run_id) for a, ta in zip(listed, trainings) for b in listed
                               if b is not a and most_at_once([ta, by_flow_run[b.flow_run_id]]) == 2]
        assert busy_while_training, "no run was running (outside training) while another trained"
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}), \
                get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name("medbuilder-training")
        assert (limit.limit, limit.active_slots, limit.active) == (SLOTS, 0, True)
        print(f"up {up_s:.1f} s, {RUNS} runs {runs_s:.1f} s; trainings: "
              + ", ".join(f"{a:%H:%M:%S}-{b:%H:%M:%S}" for a, b in sorted(trainings)))
    finally:
        stack = read_stack(state) or stack
        recorded = {name: set(tree(part["pid"])) for name, part in stack["parts"].items()}
        stopped = _cli(["down", "--state", str(state), "--grace", "10"], env)
        left = _leftovers(stack, recorded, pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)  # may lie outside tmp_path (/var/tmp, see postgres.py)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert left == [] and not http_ok(f"{api}/health") and port_free(pg_port)
    print(f"whole test {time.monotonic() - started:.1f} s")
