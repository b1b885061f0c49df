"""The fault suite for the llm core, end to end: a role running as a Prefect task in a real flow.

Each case runs a small flow on the real Prefect server (the ``prefect_api`` fixture): the
Task Manager (offline core) picks Br35H, then the Data Engineer runs with the llm core
against the scripted chat-completions server (tests/chat_server.py), with the role's
Prefect retries as its debug loops. Every script starts with the model writing
``notes.md`` (a file written before the fault); then comes the fault; then, for the
faults a model or a retry can get past, a correct make_index.py is written and run.

Every case asserts: the outcome (recovered: the stage completed and its trajectory
submitted; or the named exit status recorded in the trajectory, the feedback file and
the stage record, with the flow raising `RoleCheckFailed`), an upper bound on wall time
(the flow runs in a thread joined with a timeout, so a hang fails the test instead of
hanging it), that the flow did not crash (it returns, or raises that one named error),
that the files written before the fault are still there, and that no process the run
started is left alive. The cases ``script_crash``, ``script_hang`` and ``wrong_labels``
carry the detailed checks of a crashing script, a script that never ends, and a wrong
label mapping caught by the role's check and fixed on the Prefect retry.

The last test checks that `run_role` bounds scripts by the `Settings` it is given (it
used to take the workspace's limits from `get_settings()`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chat_server import ChatServer, call, chat_server, reply  # noqa: F401 (fixture)
from flow_helpers import descendants
from prefect import flow

from medbuilder.agents.roles.base import RoleCheckFailed
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import get_settings
from medbuilder.tasks.stage_tasks import stage_task

pytestmark = pytest.mark.slow

REQUEST = "Classify brain MRI slices as tumour or no tumour"
MODEL = "scripted-model"
SCRIPT_TIMEOUT_S = 3.0  # run_script's limit in these runs (settings.script_timeout_s)
KILL_GRACE_S = 3.0  # Workspace.kill_grace_s: SIGTERM, then SIGKILL this much later
NOTES = "Plan: one folder per class under the dataset root; keep copies in one split.\n"

# make_index.py as the scripted model writes it; LABELS maps class folder -> label name.
MAKE_INDEX = '''"""Index Br35H: one folder per class; copies (same sha256) stay in one split."""
import hashlib
import json
from pathlib import Path

ROOT = Path({root!r})
LABELS = {labels!r}
OUT = Path("index")


def digest(image):
    return hashlib.sha256(image.{read}()).hexdigest()


train, test = [], []
for folder, label in LABELS.items():
    groups = {{}}
    for image in sorted((ROOT / folder).glob("*.jpg")):
        groups.setdefault(digest(image), []).append(str(image.resolve()))
    n_test = max(1, round(len(groups) * 0.2))
    for i, paths in enumerate(groups.values()):
        (test if i < n_test else train).extend({{"image": p, "label": label}} for p in paths)
OUT.mkdir(exist_ok=True)
(OUT / "train.json").write_text(json.dumps(train, indent=1))
(OUT / "test.json").write_text(json.dumps(test, indent=1))
(OUT / "label_dict.json").write_text(json.dumps({{name: i for i, name in enumerate(LABELS.values())}}))
print(f"{{len(train)}} train, {{len(test)}} test -> {{OUT.resolve()}}")
'''
RIGHT_LABELS = {"no": "no", "yes": "yes"}
WRONG_LABELS = {"no": "tumour", "yes": "healthy"}  # swapped meaning, and not the datacard's names

# A script that never ends: it ignores SIGTERM, starts a child (in its process group) and waits forever.
HANG = '''import signal
import subprocess
import sys
import time
from pathlib import Path

signal.signal(signal.SIGTERM, signal.SIG_IGN)  # deaf to SIGTERM: only the SIGKILL after the grace ends it

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", __file__])  # its path marks it
Path("hang_pids.txt").write_text(f"{__import__('os').getpid()} {child.pid}")
print("waiting for a lock that never comes", flush=True)
while True:
    time.sleep(0.1)
'''


def make_index(root: Path, labels: dict = RIGHT_LABELS, read: str = "read_bytes") -> str:
    return MAKE_INDEX.format(root=str(root), labels=labels, read=read)


def notes_turn() -> dict:
    return reply("Noting the plan first.", call("write_file", path="notes.md", content=NOTES), usage=(900, 40))


def good_path(root: Path, final: str = "Index written: 80/20 per class, copies in one split.") -> list:
    return [reply("Writing the index script.", call("write_file", path="make_index.py", content=make_index(root)),
                  usage=(1500, 400)),
            reply(None, call("run_script", command="python make_index.py"), usage=(1900, 20)),
            reply(final, usage=(2100, 30))]


# -- the cases ------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    turns: Callable[[Path, Path], list]  # (dataset root, a path outside the run) -> the turns after notes.md
    outcome: str  # "recovered", "check_failed" (submitted, debug loops spent) or the last attempt's exit status
    bound_s: float  # upper bound on the flow's wall time
    retries: int = 0  # the role task's Prefect retries (debug loops)
    attempts: int = 1  # attempts the stage record ends with
    env: dict[str, Any] = field(default_factory=dict)
    check: Callable[["Ran"], None] | None = None  # case-specific assertions
    tail_turns: Callable[[Path], list] | None = None  # turns of the retry (after the first attempt)


@dataclass
class Ran:
    case: Case
    run: RunFolder
    server: ChatServer
    root: Path
    result: Any
    error: BaseException | None
    seconds: float
    outside: Path

    def trajectory(self, attempt: int = 1) -> Trajectory:
        return Trajectory.load(self.run.root / "trajectories" / f"data_engineer-{attempt}.json")

    def answer_to(self, command: str) -> str:
        """The tool message that answered the run_script call with this command (first found)."""
        for body in self.server.requests:
            messages = body["messages"]
            for i, message in enumerate(messages):
                for tool_call in message.get("tool_calls") or []:
                    if tool_call["function"]["name"] == "run_script" and \
                            json.loads(tool_call["function"]["arguments"]).get("command") == command:
                        return next(m["content"] for m in messages[i + 1:] if m.get("tool_call_id") == tool_call["id"])
        raise AssertionError(f"no answer to run_script {command!r} in the requests")


def _check_crash(ran: Ran) -> None:
    """(a) the crashing script's traceback reached the model as the observation; it fixed the script."""
    answer = ran.answer_to("python make_index.py")  # the first run: the crashing one
    assert "[exit code 1" in answer and "Traceback (most recent call last)" in answer
    assert "UnicodeDecodeError" in answer and "in digest" in answer
    steps = [(s.tool, s.ok) for s in ran.trajectory().steps]
    assert steps == [("write_file", True), ("write_file", True), ("run_script", False), ("write_file", True),
                     ("run_script", True)]
    assert "read_bytes" in (ran.run.workspace / "make_index.py").read_text()


def _check_hang(ran: Ran) -> None:
    """(b) the script that never ends: killed with its process group at the limit, the role went on."""
    answer = ran.answer_to("python hang.py")
    assert "TIMED OUT after" in answer and "the process group was killed" in answer
    assert "waiting for a lock that never comes" in answer  # output up to the kill is kept
    step = ran.trajectory().steps[2]
    assert (step.tool, step.ok) == ("run_script", False)
    assert SCRIPT_TIMEOUT_S + KILL_GRACE_S <= step.seconds < SCRIPT_TIMEOUT_S + KILL_GRACE_S + 3  # limit + grace
    pids = [int(p) for p in (ran.run.workspace / "hang_pids.txt").read_text().split()]
    # the PIDs are those of the sandbox's PID namespace: find the processes by the script's path instead
    assert len(pids) == 2 and not _running_with(str(ran.run.workspace / "hang.py")), "the script or its child outlived the kill"
    assert ran.trajectory().steps[-1].tool == "run_script" and ran.trajectory().steps[-1].ok


def _check_labels(ran: Ran) -> None:
    """(c) the role's check caught the wrong labels; the Prefect retry started from the feedback file."""
    feedback = ran.run.read_json("feedback/data_engineer-1.json")
    assert feedback["attempt"] == 1
    assert any("not the datacard's label names ['no', 'yes']" in p and "'tumour'" in p for p in feedback["problems"])
    first, second = ran.trajectory(1), ran.trajectory(2)
    assert first.status == "submitted" and first.feedback_in is None  # the model thought it was done
    assert second.feedback_in and "not the datacard's label names" in second.feedback_in
    # the brief of the second attempt, as the model received it, carries the feedback
    briefs = [next(m["content"] for m in body["messages"] if m["role"] == "user") for body in ran.server.requests]
    retried = [b for b in briefs if "previous attempt failed its check" in b]
    assert retried and "not the datacard's label names" in retried[0]
    assert len(set(briefs)) == 2  # one brief per attempt
    assert ran.run.stage("data_engineer").attempts == 2
    assert json.loads((ran.run.index_dir / "label_dict.json").read_text()) == {"no": 0, "yes": 1}


def _check_labels_never_fixed(ran: Ran) -> None:
    """The debug loops ran out: every attempt's feedback names the wrong labels; the last index stays for a look."""
    for attempt in (1, 2):
        problems = ran.run.read_json(f"feedback/data_engineer-{attempt}.json")["problems"]
        assert any("not the datacard's label names" in p for p in problems)
    assert ran.trajectory(2).feedback_in and ran.server.done
    assert json.loads((ran.run.index_dir / "label_dict.json").read_text()) == {"tumour": 0, "healthy": 1}


def _check_endpoint_retried(count: int) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        assert ran.trajectory().endpoint_retries == count
    return check


def _check_outside(ran: Ran) -> None:
    assert not ran.outside.exists() and not (ran.run.root / "escaped.txt").exists()
    answers = [m["content"] for m in ran.server.tool_messages(2)[-2:]]
    assert "outside the workspace" in answers[0] and answers[1].startswith("Error:")


def _check_unknown(ran: Ran) -> None:
    answer = ran.server.tool_messages(2)[-1]["content"]
    assert answer.startswith("Error: unknown tool 'delete_files'. Tools you can call: list_files, read_files,")
    step = ran.trajectory().steps[1]
    assert (step.tool, step.ok) == ("delete_files", False)


def _check_malformed(ran: Ran) -> None:
    assert "are not valid JSON" in ran.server.tool_messages(2)[-1]["content"]
    assert [(s.tool, s.ok) for s in ran.trajectory().steps][:2] == [("write_file", True), ("write_file", False)]


def _second_attempt_reads_feedback(root: Path) -> list:
    def fix(body: dict) -> dict:
        brief = next(m["content"] for m in body["messages"] if m["role"] == "user")
        assert "not the datacard's label names" in brief  # the retry starts from the feedback file
        return reply("The labels must be the datacard's names no/yes; rewriting.",
                     call("write_file", path="make_index.py", content=make_index(root)), usage=(1600, 400))
    return [fix, *good_path(root)[1:]]


CASES = [
    Case("malformed_json", lambda root, out: [
        reply(None, call("write_file", '{"path": "make_index.py", "content": "import js')), *good_path(root)],
         "recovered", 25, check=_check_malformed),
    Case("unknown_tool", lambda root, out: [
        reply(None, call("delete_files", paths=["index"])), *good_path(root)], "recovered", 25, check=_check_unknown),
    Case("path_outside_workspace", lambda root, out: [
        reply("Two calls at once.", call("write_file", path="../escaped.txt", content="x"),
              call("write_file", path=str(out), content="x")), *good_path(root)],
         "recovered", 25, check=_check_outside),
    Case("script_crash", lambda root, out: [
        reply("Writing the index script.", call("write_file", path="make_index.py",
                                                content=make_index(root, read="read_text"))),
        reply(None, call("run_script", command="python make_index.py")),
        *good_path(root)], "recovered", 25, check=_check_crash),
    Case("script_hang", lambda root, out: [
        reply("Check that the dataset is not locked first.", call("write_file", path="hang.py", content=HANG)),
        reply(None, call("run_script", command="python hang.py")),
        *good_path(root)], "recovered", 30, check=_check_hang),
    Case("wrong_labels", lambda root, out: [
        reply("Folders are tumour/healthy, I think.", call("write_file", path="make_index.py",
                                                           content=make_index(root, WRONG_LABELS))),
        reply(None, call("run_script", command="python make_index.py")),
        reply("Index written.")], "recovered", 35, retries=1, attempts=2, check=_check_labels,
         tail_turns=_second_attempt_reads_feedback),
    Case("http_500", lambda root, out: [{"status": 500}, *good_path(root)], "recovered", 25,
         check=_check_endpoint_retried(1)),
    Case("http_429", lambda root, out: [{"status": 429, "retry_after": 0.5}, *good_path(root)], "recovered", 25,
         check=_check_endpoint_retried(1)),
    Case("endpoint_timeout", lambda root, out: [{"delay_s": 3, "content": "too late"}, *good_path(root)],
         "recovered", 25, env={"LLM_TIMEOUT_S": 1}, check=_check_endpoint_retried(1)),
    # faults that persist: a named status, recorded, in bounded time
    Case("http_500_forever", lambda root, out: [{"status": 500, "repeat": "forever"}], "exit_endpoint", 30,
         retries=1, attempts=2, check=_check_endpoint_retried(2)),
    Case("http_429_forever", lambda root, out: [{"status": 429, "retry_after": 0.2, "repeat": "forever"}],
         "exit_endpoint", 25, check=_check_endpoint_retried(2)),
    Case("endpoint_timeout_forever", lambda root, out: [{"delay_s": 5, "repeat": "forever"}], "exit_endpoint", 25,
         env={"LLM_TIMEOUT_S": 0.5}, check=_check_endpoint_retried(2)),
    Case("malformed_json_forever", lambda root, out: [
        {"tool_calls": [call("write_file", '{"path": "x.py", "content": ')], "repeat": "forever"}],
         "exit_step_limit", 25, env={"MAX_STEPS": 4}),
    Case("unreadable_reply_forever", lambda root, out: [
        {"tool_calls": [call("write_file", '["x.py", "print(1)"]')], "repeat": "forever"}], "exit_format", 25),
    Case("wrong_labels_every_time", lambda root, out: [
        *[turn for _ in range(2) for turn in (
            reply(None, call("write_file", path="make_index.py", content=make_index(root, WRONG_LABELS))),
            reply(None, call("run_script", command="python make_index.py")), reply("Index written."))]],
         "check_failed", 30, retries=1, attempts=2, check=_check_labels_never_fixed),
    Case("script_hang_forever", lambda root, out: [
        reply(None, call("write_file", path="hang.py", content=HANG)),
        {"tool_calls": [call("run_script", command="python hang.py")], "repeat": "forever"}],
         "exit_step_limit", 30, env={"MAX_STEPS": 3}),
]


# -- running one case ------------------------------------------------------------------
@flow(name="llm-fault-case", persist_result=False)
def index_flow(run_dir: str, retries: int) -> dict:
    stage_task("task_manager")(run_dir, "task_manager", "offline")
    return stage_task("data_engineer", retries)(run_dir, "data_engineer", "llm")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _running_with(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes() and _alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _bounded(fn: Callable[[], Any], limit_s: float) -> tuple[Any, BaseException | None, float]:
    """Run fn in a thread; (result, raised, seconds). A run past the limit fails the test, not hangs it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # noqa: BLE001 (reported to the test)
            box["error"] = err

    started = time.monotonic()
    thread = threading.Thread(target=target, name="llm-fault-flow", daemon=True)
    thread.start()
    thread.join(limit_s)
    seconds = time.monotonic() - started
    if thread.is_alive():
        pytest.fail(f"the flow did not end within {limit_s:.0f} s: a hang")
    return box.get("result"), box.get("error"), seconds


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder with 16 Br35H images, a run folder where the task_manager stage completed).

    Each case copies the run folder: the flow's task_manager task then skips its completed
    stage (as on resume), and the encoder that ranks datacards loads once for the module.
    """
    from medbuilder.protocol.datasets import prepare
    from medbuilder.stages.roles import role_stage

    base = tmp_path_factory.mktemp("llm-faults")
    prepare("br35h", base / "data" / "br35h", limit=8, echo=lambda *_: None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBUILDER_DATA_DIR", str(base / "data"))
        patch.setenv("MEDBUILDER_RUNS_DIR", str(base / "runs"))
        get_settings.cache_clear()
        try:
            run = RunFolder.new(base / "runs")
            run.write("request.json", {"text": REQUEST})
            role_stage(str(run.root), "task_manager", "offline")
        finally:
            get_settings.cache_clear()
    assert run.read_json("plan.json")["dataset"] == "br35h"
    return base / "data", run.root


def run_case(case: Case, template: tuple[Path, Path], tmp_path: Path, monkeypatch, chat_server) -> Ran:
    data, template_root = template
    root = (data / "br35h").resolve()
    outside = tmp_path / "outside.txt"
    turns = [notes_turn(), *case.turns(root, outside), *(case.tail_turns(root) if case.tail_turns else [])]
    server = chat_server(turns)
    env = {"DATA_DIR": data, "RUNS_DIR": tmp_path / "runs", "LLM_BASE_URL": server.url, "LLM_MODEL": MODEL,
           "LLM_API_KEY": "x", "LLM_TIMEOUT_S": 5, "LLM_RETRIES": 2, "LLM_BACKOFF_S": 0.05, "MAX_STEPS": 12,
           "SCRIPT_TIMEOUT_S": SCRIPT_TIMEOUT_S, "ECHO_SCRIPTS": "false", "CORE": "llm"} | case.env
    for key, value in env.items():
        monkeypatch.setenv(f"MEDBUILDER_{key}", str(value))
    get_settings.cache_clear()
    run = RunFolder(shutil.copytree(template_root, tmp_path / "runs" / template_root.name))
    before = set(descendants(os.getpid()))
    try:
        result, error, seconds = _bounded(lambda: index_flow(str(run.root), case.retries), case.bound_s + 60)
    finally:
        get_settings.cache_clear()
    left = [p for p in set(descendants(os.getpid())) - before if _alive(p)]
    assert not left, f"processes left alive after the flow: {left}"
    return Ran(case, run, server, root, result, error, seconds, outside)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_ends_in_recovery_or_a_named_status(case, template_run, tmp_path, monkeypatch, chat_server, prefect_api):
    ran = run_case(case, template_run, tmp_path, monkeypatch, chat_server)
    run, last = ran.run, ran.trajectory(case.attempts)
    print(f"\n[llm-fault] {case.id}: {case.outcome} in {ran.seconds:.1f} s")

    # bounded time
    assert ran.seconds < case.bound_s, f"{case.id} took {ran.seconds:.1f} s (bound {case.bound_s} s)"
    stage = run.stage("data_engineer")
    assert stage.attempts == case.attempts
    assert len(list((run.root / "trajectories").glob("data_engineer-*.json"))) == case.attempts
    if case.outcome == "recovered":
        # the flow returned the role's outcome; the stage completed; the index passed the check
        assert ran.error is None, f"the flow raised {ran.error!r}"
        assert ran.result["status"] == "submitted" and ran.result["core"] == "llm"
        assert ran.result["attempt"] == case.attempts
        assert stage.status == "completed" and last.status == "submitted"
        assert run.read_json("index_report.json")["problems"] == []
        assert json.loads((run.index_dir / "label_dict.json").read_text()) == {"no": 0, "yes": 1}
        assert ran.server.done and not ran.server.extra_requests
    else:
        # the flow did not crash: it raised the role's named error, with the status in it, and recorded it
        assert isinstance(ran.error, RoleCheckFailed), f"the flow ended with {ran.error!r}, not RoleCheckFailed"
        feedback = run.read_json(f"feedback/data_engineer-{case.attempts}.json")
        assert ran.error.feedback.problems == feedback["problems"]
        assert stage.status == "failed" and stage.error.startswith("RoleCheckFailed: ")
        if case.outcome == "check_failed":
            assert last.status == "submitted" and last.ended is not None
        else:
            assert last.status == case.outcome and last.ended is not None
            assert feedback["problems"][0].startswith(f"the agent stopped with {case.outcome}: ")
            assert case.outcome in stage.error
    # the files written before the fault are still there
    assert (run.workspace / "notes.md").read_text() == NOTES
    first = ran.trajectory(1)
    assert (first.steps[0].tool, first.steps[0].ok, first.steps[0].args["path"]) == ("write_file", True, "notes.md")
    assert run.stage("task_manager").status == "completed"  # done in the template; the flow's task skipped it
    assert [p.name for p in (run.root / "trajectories").glob("task_manager-*.json")] == ["task_manager-1.json"]
    for name in ("request.json", "plan.json", "datacard.json", "trajectories/task_manager-1.json"):
        assert run.exists(name), name
    for attempt in range(1, case.attempts):  # every earlier attempt's record and feedback
        assert run.exists(f"trajectories/data_engineer-{attempt}.json")
        assert run.exists(f"feedback/data_engineer-{attempt}.json")
    if case.check:
        case.check(ran)


def test_run_role_takes_the_script_limit_from_the_settings_it_is_given(template_run, tmp_path, chat_server):
    """run_role(settings=...) with settings that are not get_settings(): its script_timeout_s bounds run_script
    (the workspace used to take its limits from get_settings(), i.e. the 900 s default here)."""
    from medbuilder.agents.runner import run_role
    from medbuilder.settings import Settings

    data, template_root = template_run
    server = chat_server([reply(None, call("write_file", path="hang.py", content=HANG)),
                          reply(None, call("run_script", command="python hang.py")),
                          reply("The dataset is locked; stopping.")])
    settings = Settings(data_dir=data, runs_dir=tmp_path / "runs", llm_base_url=server.url, llm_model=MODEL,
                        llm_api_key="x", llm_timeout_s=5, llm_retries=0, script_timeout_s=1, echo_scripts=False)
    run = RunFolder(shutil.copytree(template_root, tmp_path / "runs" / template_root.name))
    before = set(descendants(os.getpid()))
    get_settings.cache_clear()
    _, error, seconds = _bounded(lambda: run_role("data_engineer", run, settings, "llm"), 30)
    assert isinstance(error, RoleCheckFailed)  # no index: the check fails, with feedback
    answer = server.tool_messages(2)[-1]["content"]
    assert "TIMED OUT after" in answer and seconds < 1 + KILL_GRACE_S + 5
    assert not [p for p in set(descendants(os.getpid())) - before if _alive(p)]
