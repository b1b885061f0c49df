"""The dashboard in a real browser: sign in, request a build, answer both gates, see it delivered.

Real pieces only: the session's Prefect server, the build_model flow served as deployment
"build_model/build", `streamlit run dashboards/app.py`, and Debian's Chromium (/usr/bin/chromium,
`apt-get install -y chromium`) driven by Playwright. Screenshots of every page go to the pytest
tmp folder, to test-artifacts/screenshots/ in the repository and to /tmp/medbuilder-screens/.

Every request the browser makes, from the first page load on, is recorded: a request to a host that
is not loopback (a font, a favicon, telemetry) fails the test, as it would fail in an air-gapped hospital.
The live progress checks use a generated run folder ("generated-live-progress") whose train_log.jsonl
the test appends to while the page is open: the real training is too short (8 s) to watch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import REPO
from flow_helpers import kill_tree, wait_for
from medbuilder.dashboards import auth, launch
from medbuilder.protocol.artifacts import RunRecord, StageRecord
from medbuilder.protocol.run_folder import RunFolder

pytestmark = pytest.mark.slow

REQUEST = "Classify brain MRI slices as tumour or no tumour"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
USER, PASSWORD = "dr-lee", "correct horse"
SCREENS = Path("/tmp/medbuilder-screens")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _popen(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _serve_command() -> tuple[list[str], str]:
    """The stack's deployment server when it exists, else tests/serve_build.py."""
    if (REPO / "flows" / "deployments.py").exists() and importlib.util.find_spec("medbuilder.flows.deployments"):
        return [sys.executable, "-m", "medbuilder.flows.deployments"], "medbuilder.flows.deployments"
    return [sys.executable, str(REPO / "tests" / "serve_build.py")], "tests/serve_build.py"


def _deployment_ready(api: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"{api}/deployments/name/build_model/build", method="GET"), timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture()
def stack(prefect_api, br35h_small):
    """Deployment server + Streamlit, both with the test's data, runs, datacards and users file."""
    base = br35h_small
    shutil.copytree(REPO / "datacards", base / "cards")
    users = base / "users.yaml"
    users.write_text(f'{USER}: "{auth.hash_password(PASSWORD)}"\n')
    env = {"PREFECT_API_URL": prefect_api, "MEDBUILDER_DATA_DIR": str(base / "data"),
           "MEDBUILDER_RUNS_DIR": str(base / "runs"), "MEDBUILDER_DATACARDS_DIR": str(base / "cards"),
           "MEDBUILDER_TRAIN_TIME_LIMIT_S": "8", "MEDBUILDER_ECHO_SCRIPTS": "false",
           "MEDBUILDER_DASHBOARD_USERS": str(users), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # as serve_all's query_seconds: a suspended run resumes soon
    command, served_by = _serve_command()
    print(f"deployment served by {served_by}")
    serve_log, app_log = base / "serve.log", base / "streamlit.log"
    serve = _popen(command, env, serve_log)
    port = _free_port()
    app = _popen(launch.command(port), {**env, **launch.environment(base / "stack-state")}, app_log)  # as `up` does
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _deployment_ready(prefect_api), 120, "deployment build_model/build", serve_log)
        wait_for(lambda: _http_ok(f"{url}/_stcore/health"), 90, "streamlit", app_log)
        yield {"url": url, "base": base, "logs": (serve_log, app_log), "env": env}
    finally:
        for proc in (app, serve):
            if proc.poll() is None:
                kill_tree(proc)


def _evaluate_external(stack, runs_dir: Path) -> str:
    """`medbuilder evaluate` on the delivered run with 5 held-out Br35H images per class; its headline."""
    from medbuilder.protocol.datasets import prepare

    prepare("br35h-heldout", stack["base"] / "data" / "br35h-heldout", limit=5, echo=lambda *_: None)
    delivered = [p.parent for p in runs_dir.glob("*/run.json") if json.loads(p.read_text())["status"] == "delivered"]
    env = {**os.environ, **stack["env"]}
    out = subprocess.run([str(Path(sys.executable).parent / "medbuilder"), "evaluate", str(delivered[0]), "--dataset",
                          "br35h-heldout", "-m", "tumour=yes", "-m", "normal=no"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    headline = out.stdout.splitlines()[0]
    assert headline.startswith("AUROC ") and "on br35h-heldout: 10 images" in headline, out.stdout
    return "on br35h-heldout: 10 images"


class Shots:
    def __init__(self, page, folder: Path):
        self.page, self.folder = page, folder
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> None:
        """The whole page: Streamlit scrolls inside its main area, so the viewport grows to fit it."""
        self.page.wait_for_timeout(500)
        height = self.page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
        self.page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 50, 8000))})
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(self.folder / f"{name}.png"))
        self.page.set_viewport_size({"width": 1400, "height": 1000})


def _settle(page) -> None:
    """Wait until the script run is over (a rerun leaves stale copies of elements meanwhile)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=60_000)
    page.wait_for_timeout(300)


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
    _settle(page)


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def _wait_text(page, text: str, timeout_s: float, logs=()) -> None:
    """Wait until `text` is in the main area (the pages refresh themselves every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in _main_text(page):
            return
        page.wait_for_timeout(1000)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}" for log in logs if log.exists())
    raise AssertionError(f"{text!r} did not appear in {timeout_s} s; page shows:\n{_main_text(page)[-2000:]}\n{tails}")


def _no_exception(page) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _not_loopback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme not in LOCAL_SCHEMES and (parts.hostname or "") not in LOOPBACK


@pytest.fixture()
def chromium(tmp_path):
    """A Chromium page whose every request (from the first load on, frames included) is recorded; the test
    fails at the end when any went to a host that is not loopback."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.on("request", lambda request: requests.append(request.url))
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            _copy_screens(tmp_path / "screenshots")
            browser.close()
    outside = sorted({u for u in requests if _not_loopback(u)})
    assert requests and not outside, f"requests to hosts that are not loopback: {outside}"


def _copy_screens(folder: Path) -> None:
    for target in (REPO / "test-artifacts" / "screenshots", SCREENS):
        if folder.exists():
            target.mkdir(parents=True, exist_ok=True)
            for png in folder.glob("*.png"):
                shutil.copyfile(png, target / png.name)


def _sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def _sign_in(page, password: str = PASSWORD) -> None:
    sidebar = _sidebar(page)
    sidebar.get_by_label("User name").fill(USER)
    sidebar.get_by_label("Password", exact=True).fill(password)
    sidebar.get_by_role("button", name="Sign in").click()


def _reload(page) -> None:
    """A page reload: a new Streamlit session (st.session_state starts empty)."""
    page.reload()
    page.locator('[data-testid="stSidebar"]').wait_for()
    _settle(page)


# ---------------------------------------------------------------- generated run folder for live progress

LIVE_EPOCHS = 40


def _generated_live_run(runs_dir: Path) -> RunFolder:
    """A run folder made by the test (named generated-live-progress): a Model Trainer stage running for 90 s,
    config.json with 40 epochs and a train_log.jsonl of 2 epochs that the test then appends to."""
    run = RunFolder(runs_dir / "generated-live-progress")
    run.root.mkdir(parents=True)
    run.write("run.json", RunRecord(run_id=run.run_id, request="generated: live progress while training",
                                    core="offline", approve="prefect", status="running",
                                    created="2000-01-01T00:00:00+00:00"))  # sorts after the real run
    started = (datetime.now(timezone.utc) - timedelta(seconds=90)).isoformat()
    run.save_stage(StageRecord(stage="model_trainer", status="running", attempts=1, started=started))
    run.workspace.mkdir()
    (run.workspace / "config.json").write_text(json.dumps({"epochs": LIVE_EPOCHS, "time_limit_s": 10_000}))
    (run.workspace / "train_log.jsonl").write_text("")
    for epoch in (1, 2):
        _append_epoch(run, epoch)
    return run


FAILED_HISTORY = ["attempt 1: exit_step_limit (step limit 30 reached)",
                  "attempt 2: exit_format (3 replies in a row could not be read)", "attempt 3: submitted, its check failed"]


def _generated_failed_run(runs_dir: Path) -> RunFolder:
    """A run folder made by the test (named generated-failed-build): the Task Manager failed three ways."""
    run = RunFolder(runs_dir / "generated-failed-build")
    run.root.mkdir(parents=True)
    run.write("run.json", RunRecord(run_id=run.run_id, request="generated: a build that failed", core="llm",
                                    approve="auto", status="failed", created="2000-01-01T00:00:00+00:00",
                                    failed_role="task_manager", failure_reason="its check failed on every attempt"))
    run.write("failure.json", {"role": "task_manager", "stage": "task_manager", "attempts": 3,
                               "status": "its check failed on every attempt", "history": FAILED_HISTORY,
                               "findings": ["write the plan to plan.json in the workspace"],
                               "fix": "fix what the findings name", "resume": f"medbuilder resume {run.run_id}"})
    return run


def _append_epoch(run: RunFolder, epoch: int) -> None:
    line = {"epoch": epoch, "train_loss": round(1.0 / epoch, 4), "val_loss": round(1.2 / epoch, 4), "lr": 0.001,
            "seconds": 10.0, "images_per_second": 40.0}
    with open(run.workspace / "train_log.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n" + ("not json: a hostile line is skipped\n" if epoch == 2 else ""))


def _live_text(epoch: int) -> str:
    left = (LIVE_EPOCHS - epoch) * 10
    return f"epoch {epoch} of {LIVE_EPOCHS} · loss {1.0 / epoch:.4g} · validation loss {1.2 / epoch:.4g} · " \
           f"about {left // 60} min {left % 60} s left"


FEEDBACK = "it must look at the brain, not at text on the image"


def _view_a_case(page) -> None:
    """Open a test case in the viewer, change its window and overlay: a full-size image with a colour scale."""
    page.get_by_text("Case viewer").wait_for()
    before = page.locator('[data-testid="stImage"] img').count()
    sliders = page.locator('[data-testid="stSlider"] [role="slider"]')
    for label in ("Window width", "Saliency opacity"):
        slider = page.get_by_role("slider", name=label) if page.get_by_role("slider", name=label).count() \
            else sliders.nth(1 if label == "Window width" else 2)
        slider.focus()
        slider.press("ArrowLeft")
        _settle(page)
    assert page.locator('[data-testid="stImage"] img').count() >= before
    assert page.get_by_text("Level (window centre)").count() == 1


def _check_operating_point(run_dir: Path) -> None:
    """The approved target sensitivity became a threshold: stored, in the bundle's predictor, on the card."""
    point = json.loads((run_dir / "operating_point.json").read_text())
    assert point["round"] == 1 and point["how"] == "target sensitivity 0.95" and point["sensitivity"] >= 0.95
    inference = json.loads((run_dir / "bundle" / "configs" / "inference.json").read_text())
    assert inference["operating_point"]["threshold"] == point["threshold"]
    assert inference["predictor"]["threshold"] == "@operating_point#threshold"
    card = (run_dir / "model_card.md").read_text()
    assert "## Operating point" in card and f"{point['threshold']:.4f}" in card


def test_dashboard_build_end_to_end(stack, chromium, tmp_path):
    page, url = chromium, stack["url"]
    started = time.monotonic()
    shot = Shots(page, tmp_path / "screenshots")
    runs_dir = stack["base"] / "runs"
    page.goto(url)
    page.get_by_role("heading", name="New request").wait_for()
    _settle(page)
    assert "Sign in (sidebar)" in _main_text(page)
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0  # client.toolbarMode = viewer

    # sign in: a wrong password is refused, the right one accepted; a reload keeps the user signed in
    sidebar = _sidebar(page)
    _sign_in(page, "wrong")
    sidebar.get_by_text("Unknown user or wrong password.").wait_for()
    _sign_in(page)
    sidebar.get_by_text(f"Signed in as {USER}").wait_for()
    _settle(page)
    assert any(c["name"] == auth.SESSION_COOKIE for c in page.context.cookies())
    _reload(page)
    sidebar.get_by_text(f"Signed in as {USER}").wait_for()
    assert "Sign in (sidebar)" not in _main_text(page)

    # new request -> a run of the deployment
    page.get_by_label("What should the model do?").fill(REQUEST)
    page.get_by_role("button", name="Start build").click()
    page.get_by_text("Started flow run").wait_for(timeout=60_000)
    shot("1-new-request")
    _no_exception(page)

    # dataset gate: question, licence warning, why this card, counts, duplicate groups, sample images
    _nav(page, "Approvals")
    _wait_text(page, "Submit answer to dataset-1", 240, stack["logs"])
    _settle(page)
    text = _main_text(page)
    assert "Chosen: br35h" in text and REQUEST in text and "How the files were read" in text
    assert "Sample images: no" in text and "Sample images: yes" in text
    assert "Licence of br35h restricts use: research use only" in text
    assert "The Task Manager's score. br35h scored" in text and "text similarity" in text
    assert "Images per class and split" in text and "Duplicate groups." in text
    assert "Every group is kept in one split." in text
    page.locator('[data-testid="stImage"] img').first.wait_for()  # the sample images themselves
    shot("2-approvals-dataset-gate")
    # correct: the form starts from the inferred layout; the next attempt applies it as given
    page.locator('[data-testid="stRadio"]').get_by_text("correct", exact=True).click()
    layout_box = page.get_by_label("Corrected layout (for correct; JSON or YAML, starts from the inferred one)")
    corrected = json.loads(layout_box.input_value())
    assert corrected["label"]["kind"] == "folder"
    page.get_by_role("button", name="Submit answer to dataset-1").click()
    _wait_text(page, f"gate dataset-1 answered correct by {USER}", 60)
    _wait_text(page, "Submit answer to dataset-2", 240, stack["logs"])
    _settle(page)
    text = _main_text(page)
    assert f"as corrected by {USER} at gate dataset-1" in text
    assert "dataset-1 answered" not in text  # the run waits at a new gate: its banner went away
    page.get_by_role("button", name="Submit answer to dataset-2").click()
    _wait_text(page, f"gate dataset-2 answered approve by {USER}", 60)
    # the banner follows the run by itself: the status and the stage going on now, not the gate just answered
    _wait_text(page, "The run goes on: running", 60, stack["logs"])
    _wait_text(page, "Now: ", 60, stack["logs"])
    text = _main_text(page)
    assert text.count("answered approve by") == 1 and "waiting at dataset-2" not in text
    shot("3-approvals-answered-dataset-2")

    # live progress while a training runs (generated run folder, its log appended to meanwhile)
    live = _generated_live_run(runs_dir)
    _nav(page, "Runs")
    _wait_text(page, _live_text(2), 30)
    assert re.search(r"Now: model_trainer · \d+ min \d+ s so far", _main_text(page))  # counted from its start, not 0
    _append_epoch(live, 3)
    _wait_text(page, _live_text(3), 15)  # no click: the page refreshes itself
    shot("4-runs-live-progress")
    page.goto(f"{url}/run?run={live.run_id}")  # a reload, too: the user stays signed in
    page.get_by_role("heading", name="Run detail").wait_for()
    _sidebar(page).get_by_text(f"Signed in as {USER}").wait_for()
    _wait_text(page, _live_text(3), 30)
    _append_epoch(live, 4)
    _wait_text(page, _live_text(4), 15)
    assert "Now: model_trainer" in _main_text(page)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()  # the live training/validation curve
    shot("5-run-detail-live-progress")
    _no_exception(page)
    failed = _generated_failed_run(runs_dir)
    page.goto(f"{url}/run?run={failed.run_id}")
    _wait_text(page, "task_manager stopped the build: its check failed on every attempt", 30)
    assert all(line in _main_text(page) for line in FAILED_HISTORY)
    shot("5b-run-detail-failed-build")

    # review gate: figures in plain words, the case viewer, the feedback's reading, then refine
    _nav(page, "Approvals")
    _wait_text(page, "Submit answer to review-0", 400, stack["logs"])
    _settle(page)
    text = _main_text(page)
    assert "Review of round 0" in text and "AUROC" in text, text[:3000]
    assert "missed" in text and "false alarms" in text and "0.5 is chance" in text
    assert "Prefect API not reachable" not in text  # paused runs were read from the API
    page.locator('[data-testid="stImage"] img').first.wait_for()  # ROC / confusion / reliability
    shot("6-approvals-review-gate")
    _view_a_case(page)
    shot("6b-case-viewer")
    page.get_by_label("Feedback in plain words").fill(FEEDBACK)
    page.get_by_role("button", name="Read my feedback").click()
    _wait_text(page, "How your words were read", 30)
    text = _main_text(page)
    assert "confounder: burnt-in text and watermarks" in text and "keep only the head region" in text
    shot("6c-feedback-reading")
    page.locator('[data-testid="stRadio"]').get_by_text("refine", exact=True).click()
    page.get_by_role("button", name="Submit answer to review-0").click()
    _wait_text(page, f"gate review-0 answered refine by {USER}", 60)
    assert "How your words were read" in _main_text(page)  # echoed at once, before the round trains
    shot("7-approvals-refine-echo")

    # second review: before/after, met by construction; approve at a target sensitivity
    _wait_text(page, "Submit answer to review-1", 400, stack["logs"])
    _settle(page)
    text = _main_text(page)
    assert "Before and after" in text and "Met by construction" in text and "sensitivity" in text
    page.locator('[data-testid="stRadio"]').get_by_text("target sensitivity", exact=True).click()
    _wait_text(page, "Target sensitivity", 30)
    _settle(page)
    shot("7b-operating-point")
    page.get_by_role("button", name="Submit answer to review-1").click()
    _wait_text(page, f"gate review-1 answered approve by {USER}", 60)
    _wait_text(page, "The run goes on: delivered", 180, stack["logs"])
    shot("7c-approvals-answered")

    # runs
    _nav(page, "Runs")
    _wait_text(page, "delivered", 30)
    assert REQUEST in _main_text(page)
    shot("8-runs")
    _no_exception(page)

    # external validation with the CLI, as a reviewer would run it; Run detail and the model card show it
    external = _evaluate_external(stack, runs_dir)

    # run detail
    _nav(page, "Run detail")
    _wait_text(page, "Status: delivered", 30)
    text = _main_text(page)
    assert "dataset br35h" in text and "AUROC" in text and "95% CI" in text
    shot("9-run-detail")
    page.get_by_role("tab", name="Evaluation").click()
    page.get_by_text("Saliency gallery").first.wait_for()
    _wait_text(page, "External validation", 30)
    assert external in _main_text(page)
    shot("10-run-detail-evaluation")
    page.get_by_role("tab", name="Model card").click()
    _wait_text(page, "External validation", 30)
    shot("11-run-detail-model-card")
    page.get_by_role("tab", name="Trajectories").click()
    page.get_by_text("task_manager-1.json").first.wait_for()
    shot("12-run-detail-trajectories")
    _no_exception(page)

    # datacards: an invalid card is refused inline and not saved
    _nav(page, "Datacards")
    assert "br35h" in _main_text(page)
    page.get_by_label("Datacard (YAML)").fill("name: bad-card\ntitle: x\ntasks: [cooking]\n")
    page.get_by_role("button", name="Validate and save").click()
    page.get_by_text("Not saved.").wait_for()
    shot("13-datacards-invalid")

    # sign-out revokes the session: a reload then shows the user signed out
    _sidebar(page).get_by_role("button", name="Sign out").click()
    _sidebar(page).get_by_role("button", name="Sign in").wait_for()
    _reload(page)
    _sidebar(page).get_by_role("button", name="Sign in").wait_for()
    assert _sidebar(page).get_by_text(f"Signed in as {USER}").count() == 0

    # a user removed from the users file can no longer act in the session that is still open, nor after a reload
    _sign_in(page)
    _sidebar(page).get_by_text(f"Signed in as {USER}").wait_for()
    (stack["base"] / "users.yaml").write_text(f'dr-okafor: "{auth.hash_password("another password")}"\n')
    _nav(page, "New request")
    _wait_text(page, f"{USER} is no longer in the users file: signed out.", 30)
    _reload(page)
    assert "Sign in (sidebar)" in _main_text(page)
    shot("14-signed-out")

    assert not (stack["base"] / "cards" / "bad-card.yaml").exists()
    run_dir = next(p for p in runs_dir.iterdir() if (p / "run.json").exists() and not p.name.startswith("generated-"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "delivered" and (run_dir / "model_card.md").exists()
    correction = json.loads((run_dir / "decisions" / "dataset-1.json").read_text())
    assert (correction["action"], correction["who"], correction["via"]) == ("correct", USER, "dashboard")
    assert correction["layout"]["label"] == corrected["label"]
    for gate, action in (("dataset-2", "approve"), ("review-0", "refine"), ("review-1", "approve")):
        decision = json.loads((run_dir / "decisions" / f"{gate}.json").read_text())
        assert (decision["action"], decision["who"], decision["via"]) == (action, USER, "dashboard")
        assert decision["os_user"]  # the account the dashboard runs as
    assert (decision["target"], decision["target_value"]) == ("sensitivity", 0.95)
    _check_operating_point(run_dir)
    assert "the clinician's correction" in (run_dir / "trajectories" / "data_engineer-2.json").read_text()
    print(f"browser test took {time.monotonic() - started:.0f} s")
