"""The dashboard's data layer and sign-in, without a browser (the browser test is test_dashboard_browser)."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from medbuilder.dashboards import auth, data
from medbuilder.protocol.artifacts import RunFolder, RunRecord, StageRecord
from medbuilder.protocol.registry import DatacardError

GOOD_CARD = """name: tiny-mri
title: A tiny MRI set
description: Brain MRI JPEG slices in folders yes/ and no/; the folder name is the label, one image per patient.
path: tiny-mri
tasks: [diagnosis]
modality: MRI
dimension: 2D
anatomy: brain
label_names: ["no", "yes"]
file_formats: [jpg]
licence: CC0
provenance: real
source: written for this test
"""


def test_users_file_holds_salted_slow_hashes_only(tmp_path, monkeypatch):
    users = tmp_path / "users.yaml"
    first, second = auth.hash_password("pw-lee-0451"), auth.hash_password("pw-lee-0451")
    assert first != second and first.startswith("scrypt$16384$8$1$")  # salted: the same password, two hashes
    users.write_text(f'dr-lee: "{first}"\n')
    monkeypatch.setenv(auth.USERS_ENV, str(users))
    loaded = auth.load_users()
    assert auth.verify(loaded, "dr-lee", "pw-lee-0451") and not auth.verify(loaded, "dr-lee", "PW-lee-0451")
    assert not auth.verify(loaded, "nobody", "pw-lee-0451") and not auth.verify(loaded, "dr-lee", "")
    for legacy in (hashlib.sha256(b"pw").hexdigest(), "plain:tok"):
        users.write_text(f"dr-okafor: '{legacy}'\n")
        with pytest.raises(auth.UsersFileError, match="dr-okafor.*no scrypt hash.*medbuilder.dashboards.auth"):
            auth.load_users()


def test_failed_sign_ins_lock_the_name(monkeypatch):
    users = {"dr-lee": auth.hash_password("right-password")}
    monkeypatch.setattr(auth, "_failures", {})
    for _ in range(auth.MAX_FAILURES):
        assert auth.sign_in(users, "dr-lee", "wrong") is None
    assert auth.locked_for("dr-lee") > auth.LOCK_S - 5
    assert auth.sign_in(users, "dr-lee", "right-password") is None  # locked, even with the right password
    assert auth.sign_in(users, "dr-okafor", "x") is None and auth.locked_for("dr-okafor") == 0  # per name
    later = auth.locked_for("dr-lee", now=auth._failures["dr-lee"][-1] + auth.LOCK_S + 1)
    assert later == 0


def test_the_hash_command_prints_a_users_file_line(tmp_path):
    import subprocess
    import sys

    made = subprocess.run([sys.executable, "-m", "medbuilder.dashboards.auth", "dr-lee"], input="long enough pw\n",
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip()
    assert line.startswith('dr-lee: "scrypt$')
    (tmp_path / "users.yaml").write_text(line + "\n")
    assert auth.verify(auth.load_users(tmp_path / "users.yaml"), "dr-lee", "long enough pw")


def test_no_users_file_means_no_sign_in(tmp_path, monkeypatch):
    monkeypatch.delenv(auth.USERS_ENV, raising=False)
    with pytest.raises(auth.UsersFileError, match="MEDBUILDER_DASHBOARD_USERS"):
        auth.load_users()
    monkeypatch.setenv(auth.USERS_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(auth.UsersFileError, match="does not exist"):
        auth.load_users()
    (tmp_path / "bad.json").write_text("[1, 2]")
    monkeypatch.setenv(auth.USERS_ENV, str(tmp_path / "bad.json"))
    with pytest.raises(auth.UsersFileError, match="must map user names"):
        auth.load_users()


def test_add_datacard_validates_and_never_overwrites(settings_env):
    (settings_env / "data" / "tiny-mri").mkdir()
    with pytest.raises(DatacardError) as err:
        data.add_datacard(GOOD_CARD.replace("[diagnosis]", "[cooking]"))
    assert err.value.field.startswith("tasks") and "diagnosis" in err.value.fix
    with pytest.raises(DatacardError, match="malformed YAML"):
        data.add_datacard("name: [unclosed\n")
    assert not any((settings_env / "datacards").iterdir())
    saved = data.add_datacard(GOOD_CARD)
    assert saved == settings_env / "datacards" / "tiny-mri.yaml" and data.datacard_names() == ["tiny-mri"]
    with pytest.raises(DatacardError, match="already exists"):
        data.add_datacard(GOOD_CARD)


def test_runs_waiting_stages_and_timeline(settings_env):
    run = RunFolder.new(settings_env / "runs", "tumour")
    run.write("run.json", RunRecord(run_id=run.run_id, request="Classify brain MRI", core="offline",
                                    approve="prefect", flow_run_id="f1", status="running"))
    run.write("plan.json", {"status": "ok", "request": "Classify brain MRI", "dataset": "br35h"})
    run.save_stage(StageRecord(stage="task_manager", status="completed", attempts=1, actions=4,
                               started="2026-01-01T10:00:00+00:00", ended="2026-01-01T10:00:09+00:00", seconds=9))
    run.save_stage(StageRecord(stage="model_trainer-1", status="running", attempts=1,
                               started="2026-01-01T10:00:10+00:00"))
    (settings_env / "runs" / "not-a-run").mkdir()
    [info] = data.list_runs()
    assert (info.dataset, info.status, info.pending) == ("br35h", "running", None)
    assert data.waiting_runs() == [] and data.run_for_flow_run("f1").run_id == run.run_id
    run.write("gates/pending.json", {"gate": "dataset-1", "flow_run_id": "f1", "asked": "now"})
    (run.root / "gates" / "dataset-1.md").write_text("## Dataset for: x")
    [waiting] = data.waiting_runs()
    assert waiting.shown_status == "waiting at dataset-1"
    assert data.gate_question(run, "dataset-1") == "## Dataset for: x"
    run.write("process.json", {"pid": 2**22 + 1, "start_ticks": 1, "host": socket.gethostname()})  # no such process
    [interrupted] = data.list_runs()
    assert (interrupted.shown_status, data.waiting_runs()) == ("interrupted", [])  # resume first, then answer
    (run.root / "process.json").unlink()
    rows = data.stage_rows(run)
    assert [(r["stage"], r["role"]) for r in rows] == [("task_manager", "task_manager"),
                                                        ("model_trainer-1", "model_trainer")]
    timeline = data.timeline_rows(run)
    assert timeline[0]["end"] > timeline[0]["start"] and timeline[1]["end"] >= timeline[1]["start"]
    (run.workspace).mkdir()
    (run.workspace / "train_log.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 0.7}) + "\nnot json\n")
    assert data.train_log(run) == [{"epoch": 1, "train_loss": 0.7}]


@pytest.mark.slow
def test_start_build_without_deployment_says_how_to_start_it(prefect_api, settings_env, monkeypatch):
    # a name nothing serves (the browser test registers build_model/build on the shared server)
    monkeypatch.setattr(data, "DEPLOYMENT", "build_model/not-served")
    with pytest.raises(data.DeploymentMissing, match="medbuilder up"):
        data.start_build("Classify brain MRI slices as tumour or no tumour")
    with pytest.raises(ValueError, match="too short"):
        data.start_build("hi")
