"""The dashboard in a real browser: sign in, request a build, answer both gates, see it delivered.

Real pieces only: the session's Prefect server, the build_model flow served as deployment
"build_model/build", `streamlit run dashboards/app.py`, and Debian's Chromium (/usr/bin/chromium,
`apt-get install -y chromium`) driven by Playwright. Screenshots of every page go to the pytest
tmp folder and to test-artifacts/screenshots/ in the repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from flow_helpers import kill_tree, wait_for
from medbuilder.dashboards import auth

pytestmark = pytest.mark.slow

REQUEST = "Classify brain MRI slices as tumour or no tumour"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
USER, PASSWORD = "dr-lee", "correct horse"


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
           "MEDBUILDER_DASHBOARD_USERS": str(users), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command, served_by = _serve_command()
    print(f"deployment served by {served_by}")
    serve_log, app_log = base / "serve.log", base / "streamlit.log"
    serve = _popen(command, env, serve_log)
    port = _free_port()
    app = _popen([str(Path(sys.executable).parent / "streamlit"), "run", "dashboards/app.py",
                  "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                  "--browser.gatherUsageStats", "false"], env, app_log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _deployment_ready(prefect_api), 120, "deployment build_model/build", serve_log)
        wait_for(lambda: _http_ok(f"{url}/_stcore/health"), 90, "streamlit", app_log)
        yield {"url": url, "base": base, "logs": (serve_log, app_log)}
    finally:
        for proc in (app, serve):
            if proc.poll() is None:
                kill_tree(proc)


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


def test_dashboard_build_end_to_end(stack, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    started = time.monotonic()
    shots_dir = tmp_path / "screenshots"
    runs_dir = stack["base"] / "runs"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            shot = Shots(page, shots_dir)
            page.goto(stack["url"])
            page.get_by_role("heading", name="New request").wait_for()
            _settle(page)
            assert "Sign in (sidebar)" in _main_text(page)

            # sign in: a wrong password is refused, the right one accepted
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.get_by_label("User name").fill(USER)
            sidebar.get_by_label("Password", exact=True).fill("wrong")
            sidebar.get_by_role("button", name="Sign in").click()
            sidebar.get_by_text("Unknown user or wrong password.").wait_for()
            sidebar.get_by_label("Password", exact=True).fill(PASSWORD)
            sidebar.get_by_role("button", name="Sign in").click()
            sidebar.get_by_text(f"Signed in as {USER}").wait_for()
            _settle(page)

            # new request -> a run of the deployment
            page.get_by_label("What should the model do?").fill(REQUEST)
            page.get_by_role("button", name="Start build").click()
            page.get_by_text("Started flow run").wait_for(timeout=60_000)
            shot("1-new-request")
            _no_exception(page)

            # dataset gate
            _nav(page, "Approvals")
            _wait_text(page, "Submit answer to dataset-1", 240, stack["logs"])
            _settle(page)
            text = _main_text(page)
            assert "Chosen: br35h" in text and REQUEST in text and "How the files were read" in text
            assert "Sample images: no" in text and "Sample images: yes" in text
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
            assert f"as corrected by {USER} at gate dataset-1" in _main_text(page)
            page.get_by_role("button", name="Submit answer to dataset-2").click()
            _wait_text(page, f"gate dataset-2 answered approve by {USER}", 60)

            # review gate: metrics, figures, then approve
            _wait_text(page, "review-0", 400, stack["logs"])
            text = _main_text(page)
            assert "Review of round 0" in text and "auroc =" in text.lower() and "Shortcut measures" in text
            assert "Prefect API not reachable" not in text  # paused runs were read from the API
            page.locator('[data-testid="stImage"] img').first.wait_for()  # ROC / confusion / reliability
            _settle(page)
            shot("3-approvals-review-gate")
            page.get_by_role("button", name="Submit answer to review-0").click()
            _wait_text(page, f"gate review-0 answered approve by {USER}", 60)
            _wait_text(page, "The run goes on: delivered", 180, stack["logs"])
            shot("4-approvals-answered")

            # runs
            _nav(page, "Runs")
            _wait_text(page, "delivered", 30)
            assert REQUEST in _main_text(page)
            shot("5-runs")
            _no_exception(page)

            # run detail
            _nav(page, "Run detail")
            _wait_text(page, "Status: delivered", 30)
            text = _main_text(page)
            assert "dataset br35h" in text and "AUROC" in text and "95% CI" in text
            shot("6-run-detail")
            page.get_by_role("tab", name="Evaluation").click()
            page.get_by_text("Saliency gallery").wait_for()
            shot("7-run-detail-evaluation")
            page.get_by_role("tab", name="Model card").click()
            page.wait_for_timeout(500)
            shot("8-run-detail-model-card")
            page.get_by_role("tab", name="Trajectories").click()
            page.get_by_text("task_manager-1.json").first.wait_for()
            shot("9-run-detail-trajectories")
            _no_exception(page)

            # datacards: an invalid card is refused inline and not saved
            _nav(page, "Datacards")
            assert "br35h" in _main_text(page)
            page.get_by_label("Datacard (YAML)").fill("name: bad-card\ntitle: x\ntasks: [cooking]\n")
            page.get_by_role("button", name="Validate and save").click()
            page.get_by_text("Not saved.").wait_for()
            shot("10-datacards-invalid")

            # a user removed from the users file can no longer act in the session that is still open
            (stack["base"] / "users.yaml").write_text(f'dr-okafor: "{auth.hash_password("another password")}"\n')
            _nav(page, "New request")
            _wait_text(page, f"{USER} is no longer in the users file: signed out.", 30)
            browser.close()
    finally:
        target = REPO / "test-artifacts" / "screenshots"
        if shots_dir.exists():
            target.mkdir(parents=True, exist_ok=True)
            for png in shots_dir.glob("*.png"):
                shutil.copyfile(png, target / png.name)

    assert not (stack["base"] / "cards" / "bad-card.yaml").exists()
    run_dir = next(p for p in runs_dir.iterdir() if (p / "run.json").exists())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "delivered" and (run_dir / "model_card.md").exists()
    correction = json.loads((run_dir / "decisions" / "dataset-1.json").read_text())
    assert (correction["action"], correction["who"], correction["via"]) == ("correct", USER, "dashboard")
    assert correction["layout"]["label"] == corrected["label"]
    for gate in ("dataset-2", "review-0"):
        decision = json.loads((run_dir / "decisions" / f"{gate}.json").read_text())
        assert (decision["action"], decision["who"], decision["via"]) == ("approve", USER, "dashboard")
        assert decision["os_user"]  # the account the dashboard runs as
    assert "the clinician's correction" in (run_dir / "trajectories" / "data_engineer-2.json").read_text()
    print(f"browser test took {time.monotonic() - started:.0f} s")
