"""The dashboard's data layer and sign-in, without a browser (the browser test is test_dashboard_browser)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from medbuilder.dashboards import auth, data, dataset_evidence as evidence, progress
from medbuilder.protocol.artifacts import RunRecord, StageRecord
from medbuilder.protocol.registry import DatacardError
from medbuilder.protocol.run_folder import RunFolder

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


# ---------------------------------------------------------------- live progress from the hostile workspace


def _running_trainer(root, started_ago_s: float = 60.0) -> RunFolder:
    from datetime import datetime, timedelta, timezone

    run = RunFolder.new(root, "live")
    run.write("run.json", RunRecord(run_id=run.run_id, request="Classify brain MRI", core="offline",
                                    approve="prefect", status="running"))
    started = (datetime.now(timezone.utc) - timedelta(seconds=started_ago_s)).isoformat()
    run.save_stage(StageRecord(stage="task_manager", status="completed", attempts=1, actions=4,
                               started="2026-01-01T10:00:00+00:00", ended="2026-01-01T10:00:09+00:00", seconds=9))
    run.save_stage(StageRecord(stage="model_trainer", status="running", attempts=1, started=started))
    run.workspace.mkdir(exist_ok=True)
    return run


def _epochs(*seconds: float, val: bool = False) -> str:
    return "".join(json.dumps({"epoch": i, "train_loss": 1.0 / i, "val_loss": (0.9 / i) if val else None,
                               "lr": 0.001, "seconds": s, "images_per_second": 50.0}) + "\n"
                   for i, s in enumerate(seconds, 1))


def test_train_log_is_read_without_links_and_garbage_is_skipped(settings_env, tmp_path):
    run = _running_trainer(settings_env / "runs")
    log = run.workspace / "train_log.jsonl"
    garbage = ["not json", "[1, 2]", json.dumps({"epoch": "3"}), json.dumps({"epoch": True}), json.dumps({"epoch": 0}),
               json.dumps({"epoch": 2, "train_loss": float("nan"), "seconds": -5, "lr": "x", "extra": [1] * 50}),
               "[" * 100_000, json.dumps({"epoch": 3, "train_loss": 1e308, "val_loss": None})]
    log.write_text(_epochs(2.0) + "\n".join(garbage) + "\n")
    assert data.train_log(run) == [{"epoch": 1, "train_loss": 1.0, "lr": 0.001, "seconds": 2.0,
                                    "images_per_second": 50.0},
                                   {"epoch": 2}, {"epoch": 3, "train_loss": 1e308}]
    outside = tmp_path / "secret.jsonl"
    outside.write_text(_epochs(1.0, 1.0))
    log.unlink()
    log.symlink_to(outside)  # an agent's link to a host file: not followed
    assert data.train_log(run) == [] and data.run_now(run).training is None
    log.unlink()
    os.mkfifo(log)  # a FIFO must not block the dashboard
    assert data.train_log(run) == []
    log.unlink()
    log.write_bytes(b"x" * (progress.LOG_MAX_BYTES + 1))  # too large: not read at all
    assert data.train_log(run) == []
    round_log = run.root / "rounds" / "0" / "train_log.jsonl"
    round_log.parent.mkdir(parents=True)
    round_log.write_text(_epochs(3.0, 3.0))
    assert [e["epoch"] for e in data.train_log(run, 0)] == [1, 2]


def test_live_progress_shows_epoch_loss_eta_and_current_stage_time(settings_env):
    run = _running_trainer(settings_env / "runs", started_ago_s=60)
    (run.workspace / "config.json").write_text(json.dumps({"epochs": 10, "lr": 0.001}))
    now = data.run_now(run)
    assert (now.stage, now.role, now.training) == ("model_trainer", "model_trainer", None)  # no epoch yet
    assert 59 <= now.seconds < 90  # a running stage counts from its start, not 0
    rows = {r["stage"]: r for r in data.stage_rows(run)}
    assert rows["task_manager"]["seconds"] == 9 and 59 <= rows["model_trainer"]["seconds"] < 90
    roles = {r["role"]: r for r in data.role_rows(run)}
    assert 59 <= roles["model_trainer"]["seconds"] < 90 and roles["task_manager"]["actions"] == 4
    (run.workspace / "train_log.jsonl").write_text(_epochs(2.0, 4.0, 6.0))
    run.write("trajectories/model_trainer-1.json", {"role": "model_trainer", "status": "running",
                                                    "steps": [{"tool": "read_files"}] * 3})
    training = data.run_now(run).training
    assert (training.epoch, training.epochs, training.mean_epoch_s, training.eta_s) == (3, 10, 4.0, 28.0)
    assert not training.has_validation and training.fraction == 0.3
    assert training.text() == "epoch 3 of 10 · loss 0.3333 · about 28 s left"
    assert data.run_now(run).actions == 3  # tool calls so far in the attempt still going
    assert data.run_now(run).text().startswith("model_trainer: 1 min ") and "3 actions · training epoch 3" in \
        data.run_now(run).text()
    # validation loss shown when the run holds a validation split; the time limit caps the ETA
    (run.workspace / "train_log.jsonl").write_text(_epochs(2.0, 4.0, 6.0, val=True))
    (run.workspace / "config.json").write_text(json.dumps({"epochs": 10, "time_limit_s": 20}))
    training = data.run_now(run).training
    assert training.has_validation and training.val_loss == 0.3 and training.eta_s == 8.0 and training.limited
    assert "validation loss 0.3" in training.text() and "about 8 s left (the time limit ends it)" in training.text()
    # garbage config: no planned epochs, so no ETA, and nothing crashes
    (run.workspace / "config.json").write_text(json.dumps({"epochs": "many", "time_limit_s": -1}))
    training = data.run_now(run).training
    assert training.epochs is None and training.eta_s is None and "time left unknown" in training.text()
    # a log older than the running stage is an earlier round's: not shown as this training
    old = time.time() - 3600
    os.utime(run.workspace / "train_log.jsonl", (old, old))
    assert data.run_now(run).training is None


def test_dataset_gate_evidence_counts_duplicates_licence_and_score(settings_env, tmp_path):
    run = RunFolder.new(settings_env / "runs", "gate")
    run.write("indexing_report.json", {"per_class": {"no": 6, "yes": 5}, "records": 11, "train": 8, "test": 3})
    run.write("index_report.json", {"task": "diagnosis", "counts": {"train": 8, "test": 3},
                                    "class_counts": {"train": {"no": 4, "yes": 4}, "test": {"no": 2, "yes": 1}}})
    assert evidence.split_counts(run) == [{"class": "no", "images": 6, "train": 4, "test": 2},
                                      {"class": "yes", "images": 5, "train": 4, "test": 1},
                                      {"class": "all", "images": 11, "train": 8, "test": 3}]
    index = run.workspace / "index"
    index.mkdir(parents=True)

    def rec(name, group, patient=None):
        return {"image": f"/data/x/{name}.jpg", "label": "no", "duplicate_group": group,
                **({"patient_id": patient} if patient else {})}

    train = [rec("a1", 1), rec("a2", 1), rec("a3", 1), rec("b1", 2), rec("c", 3, "p1"), rec("d", 4, "p2")]
    test = [rec("b2", 2), rec("e", 5, "p1"), rec("f", 6)]
    (index / "train.json").write_text(json.dumps(train))
    (index / "test.json").write_text(json.dumps(test))
    dup = evidence.duplicate_summary(run)
    assert (dup.records, dup.groups, dup.multi, dup.in_multi, dup.largest, dup.largest_group) == (9, 6, 2, 5, 3, "1")
    assert dup.largest_examples == ["a1.jpg", "a2.jpg", "a3.jpg"] and dup.across == ["2"]
    assert (dup.patients, dup.patients_across) == (2, ["p1"])
    assert "2 of 6 duplicate groups hold more than one image (5 images)" in dup.text()
    assert "1 groups have images in both train and test: 2" in dup.text()
    (index / "test.json").write_text(json.dumps([rec("b2", 7), rec("f", 6)]))
    assert "Every group is kept in one split." in evidence.duplicate_summary(run).text()
    (index / "train.json").unlink()
    (index / "train.json").symlink_to(tmp_path / "elsewhere.json")  # a link in the workspace: not read
    (tmp_path / "elsewhere.json").write_text(json.dumps(train))
    assert evidence.duplicate_summary(run).records == 2
    # the licence: a restricting one is named as such
    card = {"name": "br35h", "licence": "Not clearly stated by the original Kaggle release; treat as research and "
                                        "teaching use only; do not redistribute the images."}
    run.write("datacard.json", card)
    found = evidence.licence(run)
    assert found["restrictions"] == ["research use only", "teaching use", "no redistribution", "licence unclear"]
    for text, expected in [("CC BY-NC-ND 4.0", ["non-commercial", "no derivatives"]), ("CC BY 4.0", []),
                           ("Apache-2.0 (generated by medbuilder; no third-party content)", []),
                           ("free, but not for clinical use", ["no clinical use"])]:
        assert evidence.licence_restrictions(text) == expected, text
    # the Task Manager's score, in words
    run.write("plan.json", {"status": "ok", "request": "x", "dataset": "br35h", "candidates": [
        {"name": "br35h", "score": 1.11, "fits": True,
         "reasons": ["for: task: request asks for diagnosis; br35h serves diagnosis", "for: modality: MRI",
                     "for: anatomy: brain", "for: finding: tumour", "text similarity to the datacard: 0.71"]},
        {"name": "synth-seg3d", "score": 0.25, "fits": False,
         "reasons": ["against: task: ...", "text similarity to the datacard: 0.25"]}]})
    rows = evidence.candidate_scores(run)
    assert rows[0] == {"dataset": "br35h", "score": 1.11, "similarity": 0.71,
                            "matched terms": "task, modality, anatomy, finding", "term bonus": 0.4, "fits": True}
    text = evidence.chosen_score_text(run)
    assert text.startswith("br35h scored 1.11 = text similarity 0.71") and "4 matched request terms x 0.1" in text
    assert "the best of 2 datacards" in text and "0.1 for each term" in evidence.score_explained()


# ---------------------------------------------------------------- sessions that survive a reload


def test_session_tokens_are_signed_expire_and_are_revoked(tmp_path, monkeypatch):
    monkeypatch.setenv(auth.STATE_ENV, str(tmp_path / "state"))
    users = {"dr-lee": auth.hash_password("pw-lee-0451"), "dr-okafor": auth.hash_password("pw-okafor-1")}
    token = auth.issue_session(users, "dr-lee")
    secret = tmp_path / "state" / auth.SECRET_FILE
    assert (secret.stat().st_mode & 0o777, (tmp_path / "state").stat().st_mode & 0o777) == (0o600, 0o700)
    assert auth.check_session(users, token) == "dr-lee"
    version, user, expires, sid, mac = token.split(".")
    forged = [".".join([version, auth._b64("dr-okafor"), expires, sid, mac]),  # another user, same signature
              ".".join([version, user, str(int(expires) + 10**6), sid, mac]),  # a later expiry
              token[:-1] + ("0" if token[-1] != "0" else "1"), "garbage", "", "v1.a.b.c.d"]
    assert [auth.check_session(users, t) for t in forged] == [None] * len(forged)
    assert auth.check_session(users, token, now=int(expires) + 1) is None  # expired
    assert auth.check_session({"dr-okafor": users["dr-okafor"]}, token) is None  # left the users file
    assert auth.check_session({**users, "dr-lee": auth.hash_password("new password")}, token) is None
    other = auth.issue_session(users, "dr-okafor")
    auth.revoke_session(token)  # sign-out
    assert auth.check_session(users, token) is None and auth.check_session(users, other) == "dr-okafor"
    assert (tmp_path / "state" / auth.REVOKED_FILE).stat().st_mode & 0o777 == 0o600
    auth.revoke_session(other, now=int(expires) + 1)  # expired entries leave the list
    assert list(json.loads((tmp_path / "state" / auth.REVOKED_FILE).read_text())) == [other.split(".")[3]]
    secret.chmod(0o644)  # a secret others can read signs nothing
    with pytest.raises(auth.SessionError, match="chmod 600"):
        auth.check_session(users, other)
    monkeypatch.setenv(auth.STATE_ENV, str(tmp_path / "fresh"))
    assert auth.check_session(users, other) is None  # another secret: the old tokens mean nothing


def test_launcher_turns_off_deploy_button_and_usage_statistics():
    from streamlit import config

    from medbuilder.dashboards import launch

    cmd = launch.command(8599)
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboards/app.py")
    assert flags["--client.toolbarMode"] == "viewer" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8599"
    for key in launch.OPTIONS:  # every option exists in the installed Streamlit
        assert key in config._config_options_template, key
