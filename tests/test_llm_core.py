"""The LLM core over real HTTP: the real ChatOpenAI client against a local scripted
chat-completions server (tests/chat_server.py), real tools, real run folders.

The headline test runs the Data Engineer role with the llm core on 16 real Br35H
images: the scripted model previews the dataset, writes make_index.py with a bug,
reads the traceback, fixes the script with edit_file and runs it again. The others
script one fault each and check that it ends in recovery or a named status, fast.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import ChatServer, call, chat_server, reply  # noqa: F401 (fixture)
from langchain_openai import ChatOpenAI

from medbuilder.agents.core import AgentExit, RoleJob
from medbuilder.agents.llm_core import LlmCore
from medbuilder.agents.roles import ROLES
from medbuilder.agents.roles.base import RoleCheckFailed
from medbuilder.agents.runner import RoleOutcome, run_role
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.protocol.tools import TOOLS, Workspace
from medbuilder.protocol.tools.langchain_layer import model_description
from medbuilder.settings import Settings, get_settings

REQUEST = "Classify brain MRI slices as tumour or no tumour"
MODEL = "scripted-model"

# make_index.py as the scripted model first writes it: hashlib is used but not imported.
MAKE_INDEX = '''"""Index Br35H: one folder per class; copies (same sha256) stay in one split."""
import json
from pathlib import Path

ROOT = Path({root!r})
OUT = Path("index")

train, test = [], []
for label in ("no", "yes"):
    groups = {{}}
    for image in sorted((ROOT / label).glob("*.jpg")):
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        groups.setdefault(digest, []).append(str(image.resolve()))
    n_test = max(1, round(len(groups) * 0.2))
    for i, paths in enumerate(groups.values()):
        (test if i < n_test else train).extend({{"image": p, "label": label}} for p in paths)
OUT.mkdir(exist_ok=True)
(OUT / "train.json").write_text(json.dumps(train, indent=1))
(OUT / "test.json").write_text(json.dumps(test, indent=1))
(OUT / "label_dict.json").write_text(json.dumps({{"no": 0, "yes": 1}}))
print(f"{{len(train)}} train, {{len(test)}} test -> {{OUT.resolve()}}")
'''


def _dataset_root_from(body: dict) -> str:
    """The dataset root the brief names ("... of br35h (/abs/path)"): a turn that reads the request."""
    brief = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return re.search(r" of br35h \((/[^)]+)\)", brief).group(1)


def _llm_settings(monkeypatch, tmp_path: Path, server: ChatServer) -> None:
    """The llm core against the scripted server; data and runs under tmp_path."""
    for key, value in {"DATA_DIR": tmp_path / "data", "RUNS_DIR": tmp_path / "runs", "CORE": "llm",
                       "LLM_BASE_URL": server.url, "LLM_MODEL": MODEL, "LLM_API_KEY": "x", "LLM_TIMEOUT_S": 10,
                       "LLM_RETRIES": 1, "LLM_BACKOFF_S": 0.05, "ECHO_SCRIPTS": "false"}.items():
        monkeypatch.setenv(f"MEDBUILDER_{key}", str(value))
    get_settings.cache_clear()


def data_engineer_script(root: Path) -> list:
    return [
        lambda body: reply("How is the dataset organised?", call("preview_dirs", path=_dataset_root_from(body)),
                           usage=(1200, 40)),
        reply("Class folders no/ and yes/. Writing the index script.",
              call("write_file", path="make_index.py", content=MAKE_INDEX.format(root=str(root))), usage=(1500, 400)),
        reply(None, call("run_script", command="python make_index.py"), usage=(1950, 20)),
        reply("hashlib is not imported.", call("edit_file", path="make_index.py", old_text="import json\n",
                                               new_text="import hashlib\nimport json\n"), usage=(2300, 60)),
        reply(None, call("run_script", command="python make_index.py"), usage=(2500, 20)),
        reply("Index written: 80/20 per class, copies kept in one split, absolute paths.", usage=(2700, 30)),
    ]


def test_data_engineer_with_llm_core_fixes_its_script(tmp_path, monkeypatch, chat_server):
    from medbuilder.protocol.datasets import prepare

    root = prepare("br35h", tmp_path / "data" / "br35h", limit=8, echo=lambda *_: None).resolve()
    script = data_engineer_script(root)
    server = chat_server(script)
    _llm_settings(monkeypatch, tmp_path, server)
    try:
        settings = get_settings()
        run = RunFolder.new(settings.runs_dir)
        run.write("request.json", {"text": REQUEST})
        run_role("task_manager", run, settings, "offline")
        assert run.read_json("plan.json")["dataset"] == "br35h" and run.exists("datacard.json")

        outcome = run_role("data_engineer", run, settings, "llm")
    finally:
        get_settings.cache_clear()

    # the role passed its check, with the tokens the server reported
    usage = [turn(server.requests[0])["usage"] if callable(turn) else turn["usage"] for turn in script]
    prompt, completion = sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage)
    assert isinstance(outcome, RoleOutcome)
    assert (outcome.status, outcome.core, outcome.actions) == ("submitted", "llm", 5)
    assert outcome.tokens == prompt + completion
    trajectory = Trajectory.load(run.root / "trajectories" / "data_engineer-1.json")
    assert (trajectory.status, trajectory.core, trajectory.model) == ("submitted", "llm", MODEL)
    assert trajectory.final == script[-1]["content"]
    assert (trajectory.tokens.prompt, trajectory.tokens.completion) == (prompt, completion)
    assert [(s.tool, s.ok) for s in trajectory.steps] == [
        ("preview_dirs", True), ("write_file", True), ("run_script", False), ("edit_file", True), ("run_script", True)]
    assert json.loads(run.path("index_report.json").read_text())["problems"] == []
    index = run.index_dir
    assert json.loads((index / "label_dict.json").read_text()) == {"no": 0, "yes": 1}
    records = json.loads((index / "train.json").read_text()) + json.loads((index / "test.json").read_text())
    assert len(records) == 16 and all(Path(r["image"]).is_absolute() and Path(r["image"]).is_file() for r in records)
    assert {r["label"] for r in json.loads((index / "test.json").read_text())} == {"no", "yes"}

    # what the client sent: one request per scripted turn, each extending the last
    assert len(server.requests) == len(script) and server.done and not server.extra_requests
    first = server.requests[0]
    assert first["model"] == MODEL and not first.get("stream")
    assert server.headers[0]["authorization"] == "Bearer x"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["messages"][0]["content"] == trajectory.messages[0]["content"]
    assert str(root) in first["messages"][1]["content"]
    for earlier, later in zip(server.requests, server.requests[1:]):
        assert later["messages"][:len(earlier["messages"])] == earlier["messages"]
        assert later["tools"] == first["tools"]
    # the tools offered are exactly the Data Engineer's subset, with the descriptions the model reads
    assert server.tool_names(0) == ROLES["data_engineer"].tools
    for tool in first["tools"]:
        function = tool["function"]
        assert function["description"] == model_description(TOOLS[function["name"]].function) != ""
        assert function["parameters"]["type"] == "object" and function["parameters"]["properties"]
    assert first.get("tool_choice") in (None, "auto")
    assert first["tools"][2]["function"]["parameters"]["properties"]["path"]["description"]  # preview_dirs' Args

    # the failing run's traceback reached the model, as the answer to that very call
    write_call, run_call = (server.messages(2)[-2], server.messages(3)[-2])
    assert write_call["role"] == "assistant" and write_call["tool_calls"][0]["function"]["name"] == "write_file"
    assert json.loads(write_call["tool_calls"][0]["function"]["arguments"])["path"] == "make_index.py"
    failed = server.tool_messages(3)[-1]
    assert failed["tool_call_id"] == run_call["tool_calls"][0]["id"]
    assert "[exit code 1" in failed["content"] and "Traceback" in failed["content"]
    assert "NameError: name 'hashlib' is not defined" in failed["content"]
    assert "[exit code 0" in server.tool_messages(5)[-1]["content"]


def test_data_engineer_with_llm_core_answers_with_a_layout(tmp_path, monkeypatch, chat_server):
    """The LLM core's answer is a typed layout through apply_layout, whose argument schema is the layout
    model: a first try reads the class from the file name (wrong for Br35H's 'No12.jpg' / 'y0.jpg'), the
    report says which values did not map, the second try names the class folders and is submitted;
    medbuilder builds the index from it."""
    from medbuilder.protocol.datasets import prepare

    root = prepare("br35h", tmp_path / "data" / "br35h", limit=8, echo=lambda *_: None).resolve()
    by_name = {"task": "diagnosis", "images": {"roots": ["."]},
               "label": {"kind": "filename", "regex": "^([A-Za-z]+)"}}
    by_folder = {"task": "diagnosis", "images": {"roots": ["."]}, "label": {"kind": "folder", "depth": 0}}
    script = [
        lambda body: reply("How is it organised?", call("preview_dirs", path=_dataset_root_from(body))),
        reply("Try the file name.", call("apply_layout", layout=by_name)),
        reply("The file-name codes are not the labels; the folders are.", call("apply_layout", layout=by_folder)),
        reply(None, call("apply_layout", layout=by_folder, submit=True)),
        reply("Layout submitted: class folders no/ and yes/."),
    ]
    server = chat_server(script)
    _llm_settings(monkeypatch, tmp_path, server)
    try:
        settings = get_settings()
        run = RunFolder.new(settings.runs_dir)
        run.write("request.json", {"text": REQUEST})
        run_role("task_manager", run, settings, "offline")
        outcome = run_role("data_engineer", run, settings, "llm")
    finally:
        get_settings.cache_clear()

    assert outcome.status == "submitted" and server.done
    schema = next(t["function"]["parameters"] for t in server.requests[0]["tools"]
                  if t["function"]["name"] == "apply_layout")
    layout_schema = json.dumps(schema)
    assert "layout" in schema["properties"] and all(f in layout_schema for f in ("label_map", "dicom_series",
                                                                                  "key_column", "split_map"))
    first_try = server.tool_messages(2)[-1]["content"]
    assert first_try.startswith("Tried") and "no label name" in first_try
    assert "Submitted" in server.tool_messages(4)[-1]["content"]
    layout = json.loads(run.path("layout.json").read_text())
    assert layout["label"] == {"kind": "folder", "depth": 0, "regex": None}
    assert json.loads(run.path("index_report.json").read_text())["problems"] == []
    records = json.loads((run.index_dir / "train.json").read_text()) + json.loads((run.index_dir / "test.json").read_text())
    assert len(records) == 16 and {r["label"] for r in records} == {"no", "yes"}
    assert not (run.workspace / "make_index.py").exists()


# -- one fault at a time, on a small job over the same HTTP path ------------------
TOOLSET = ["list_files", "read_files", "write_file", "run_script"]
WRITE_HELLO = call("write_file", path="hello.txt", content="hello\n")
DONE = reply("Done: hello.txt is written.", usage=(300, 10))


def settings_for(server: ChatServer, **overrides) -> Settings:
    values = {"llm_base_url": server.url, "llm_model": MODEL, "llm_api_key": "x", "llm_timeout_s": 1.0,
              "llm_retries": 2, "llm_backoff_s": 0.05, "max_steps": 6} | overrides
    return Settings(**values)


def run_agent(tmp_path: Path, server: ChatServer, core: LlmCore | None = None, **overrides):
    """Run a small job through LlmCore; returns (final text or AgentExit, trajectory, seconds)."""
    trajectory = Trajectory(role="tester", attempt=1, core="llm", path=tmp_path / "trajectory.json")
    workspace = Workspace.create(tmp_path / "ws", output_chars=2000, script_timeout_s=20)
    job = RoleJob("tester", "You are a test agent.", "Write hello.txt in the workspace.", lambda *_: "", {})
    core = core or LlmCore.from_settings(settings_for(server, **overrides))
    started = time.monotonic()
    try:
        result = core.run(job, Toolbox(workspace, TOOLSET, trajectory), trajectory)
    except AgentExit as exit_:
        result = exit_
    return result, trajectory, time.monotonic() - started


@pytest.mark.parametrize("fault", [
    {"status": 500},
    {"status": 503, "message": "overloaded"},
    {"disconnect": True},
    {"delay_s": 1.5, "content": "too late"},  # slower than the client's 0.5 s timeout
], ids=["http500", "http503", "disconnect", "timeout"])
def test_endpoint_fault_then_success_recovers(tmp_path, chat_server, fault):
    server = chat_server([fault, reply(None, WRITE_HELLO, usage=(200, 20)), DONE])
    final, trajectory, seconds = run_agent(tmp_path, server, llm_timeout_s=0.5)
    assert final == DONE["content"]
    assert trajectory.endpoint_retries == 1 and (tmp_path / "ws" / "hello.txt").read_text() == "hello\n"
    assert server.requests[0]["messages"] == server.requests[1]["messages"]  # the same turn, sent again
    assert (trajectory.tokens.prompt, trajectory.tokens.completion) == (500, 30)
    assert seconds < 3


def test_rate_limit_waits_for_retry_after(tmp_path, chat_server):
    server = chat_server([{"status": 429, "retry_after": 0.4}, DONE])
    final, trajectory, seconds = run_agent(tmp_path, server)
    assert final == DONE["content"] and trajectory.endpoint_retries == 1
    assert 0.4 <= seconds < 2  # the server's Retry-After, not the 0.05 s backoff


def test_endpoint_down_for_good_ends_the_role_with_exit_endpoint(tmp_path, monkeypatch, chat_server):
    server = chat_server([{"status": 500, "repeat": "forever"}])
    for key, value in {"RUNS_DIR": tmp_path / "runs", "LLM_BASE_URL": server.url, "LLM_MODEL": MODEL,
                       "LLM_RETRIES": 2, "LLM_BACKOFF_S": 0.05, "LLM_TIMEOUT_S": 1}.items():
        monkeypatch.setenv(f"MEDBUILDER_{key}", str(value))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        run = RunFolder.new(settings.runs_dir)
        run.write("request.json", {"text": REQUEST})
        started = time.monotonic()
        with pytest.raises(RoleCheckFailed) as failed:
            run_role("task_manager", run, settings, "llm")
    finally:
        get_settings.cache_clear()
    assert time.monotonic() - started < 5
    assert len(server.requests) == 3  # the first try and two retries
    feedback = json.loads(run.path("feedback/task_manager-1.json").read_text())
    assert feedback["problems"][0].startswith("the agent stopped with exit_endpoint: endpoint failed 3 times: ")
    assert "Error code: 500" in feedback["problems"][0]
    assert failed.value.feedback.problems == feedback["problems"]
    trajectory = Trajectory.load(run.path("trajectories/task_manager-1.json"))
    assert (trajectory.status, trajectory.endpoint_retries, trajectory.actions) == ("exit_endpoint", 2, 0)


@pytest.mark.parametrize("fault, words", [
    ({"status": 400, "message": "maximum context length exceeded"}, "refused the request"),
    ({"garbage": True}, "answer is not JSON"),
], ids=["http400", "not-json"])
def test_endpoint_errors_that_retrying_cannot_fix_end_at_once(tmp_path, chat_server, fault, words):
    server = chat_server([fault, DONE])
    result, trajectory, seconds = run_agent(tmp_path, server)
    assert isinstance(result, AgentExit) and result.status == "exit_endpoint" and words in str(result)
    assert len(server.requests) == 1 and trajectory.endpoint_retries == 0 and seconds < 2


def test_spent_script_is_answered_410_and_not_retried(tmp_path, chat_server):
    server = chat_server([reply(None, WRITE_HELLO)])
    result, _, _ = run_agent(tmp_path, server)
    assert isinstance(result, AgentExit) and result.status == "exit_endpoint" and "script exhausted" in str(result)
    assert len(server.extra_requests) == 1


def test_malformed_tool_arguments_go_back_to_the_model(tmp_path, chat_server):
    server = chat_server([reply(None, call("write_file", '{"path": "hello.txt", "content": "hel')),
                          reply("Resending with valid JSON.", WRITE_HELLO), DONE])
    final, trajectory, _ = run_agent(tmp_path, server)
    assert final == DONE["content"] and (tmp_path / "ws" / "hello.txt").exists()
    answer = server.tool_messages(1)[-1]
    assert answer["content"].startswith("Error: the arguments of your call to 'write_file' are not valid JSON")
    assert answer["tool_call_id"] == server.messages(1)[-2]["tool_calls"][0]["id"]
    assert [(s.tool, s.ok) for s in trajectory.steps] == [("write_file", False), ("write_file", True)]
    assert trajectory.messages[2]["tool_calls"][0]["invalid"]


def test_arguments_that_are_not_an_object_go_back_to_the_model(tmp_path, chat_server):
    server = chat_server([reply(None, call("write_file", '["hello.txt", "hello"]')), reply(None, WRITE_HELLO), DONE])
    final, trajectory, _ = run_agent(tmp_path, server)
    assert final == DONE["content"] and (tmp_path / "ws" / "hello.txt").exists()
    note = server.messages(1)[-1]
    assert note["role"] == "user" and note["content"].startswith("Error: your last reply could not be read")
    assert trajectory.status == "running"  # run_agent calls the core alone; run_role finishes it


def test_replies_that_never_parse_end_with_exit_format(tmp_path, chat_server):
    server = chat_server([{"tool_calls": [call("write_file", "[1]")], "repeat": "forever"}])
    result, _, _ = run_agent(tmp_path, server)
    assert isinstance(result, AgentExit) and result.status == "exit_format"
    assert len(server.requests) == 3  # format_retries = 2


def test_unknown_tool_gets_the_list_of_tools(tmp_path, chat_server):
    server = chat_server([reply(None, call("delete_everything", path=".")), reply(None, WRITE_HELLO), DONE])
    final, trajectory, _ = run_agent(tmp_path, server)
    assert final == DONE["content"]
    answer = server.tool_messages(1)[-1]["content"]
    assert answer == "Error: unknown tool 'delete_everything'. Tools you can call: " + ", ".join(TOOLSET) + "."
    assert trajectory.steps[0].tool == "delete_everything" and not trajectory.steps[0].ok


def test_paths_outside_the_workspace_are_refused_as_observations(tmp_path, chat_server):
    outside = tmp_path / "outside.txt"
    server = chat_server([reply("Two calls at once.", call("write_file", path="../outside.txt", content="x"),
                                call("read_files", paths=["/etc/hostname"])), DONE])
    final, trajectory, _ = run_agent(tmp_path, server)
    assert final == DONE["content"] and not outside.exists()
    write_answer, read_answer = server.tool_messages(1)
    assert write_answer["content"].startswith("Error: '../outside.txt' resolves to")
    assert "outside the workspace" in write_answer["content"]
    assert "outside the readable folders" in read_answer["content"]
    assert [s.ok for s in trajectory.steps] == [False, False]


def test_step_limit_ends_with_exit_step_limit(tmp_path, chat_server):
    server = chat_server([{"tool_calls": [call("list_files", path=".")], "repeat": "forever"}])
    result, trajectory, _ = run_agent(tmp_path, server, max_steps=3)
    assert isinstance(result, AgentExit) and result.status == "exit_step_limit"
    assert trajectory.actions == 3 and len(server.requests) == 4  # the 4th reply asked for a 4th call


def test_a_final_answer_after_the_last_allowed_step_is_accepted(tmp_path, chat_server):
    server = chat_server([reply(None, call("list_files", path=".")), reply(None, WRITE_HELLO), DONE])
    final, trajectory, _ = run_agent(tmp_path, server, max_steps=2)
    assert final == DONE["content"] and trajectory.actions == 2


# -- streaming ----------------------------------------------------------------------
def test_streamed_replies_work_through_the_core(tmp_path, chat_server):
    """LlmCore does not stream by default (from_settings builds a non-streaming client); a
    streaming client works the same, and reports usage when it asks for it."""
    long_text = "line of text\n" * 20  # its arguments go out in many small pieces
    server = chat_server([reply("Writing.", call("write_file", path="hello.txt", content=long_text), usage=(100, 50)),
                          reply(None, call("write_file", '{"path": "x.txt", "content": }')),
                          DONE])
    chat = ChatOpenAI(base_url=server.url, api_key="x", model=MODEL, max_retries=0, timeout=2,
                      streaming=True, stream_usage=True)
    final, trajectory, _ = run_agent(tmp_path, server, core=LlmCore(chat, MODEL, max_steps=5, backoff_s=0.05))
    assert final == DONE["content"] and (tmp_path / "ws" / "hello.txt").read_text() == long_text
    assert all(r["stream"] and r["stream_options"] == {"include_usage": True} for r in server.requests)
    assert (trajectory.tokens.prompt, trajectory.tokens.completion) == (400, 60)
    assert server.tool_messages(2)[-1]["content"].startswith("Error: the arguments of your call to 'write_file'")


RUN_SCRIPT_SCHEMA = [{"type": "function", "function": {
    "name": "run_script", "description": "Run a script.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]


def test_server_streams_tool_calls_in_pieces(chat_server):
    server = chat_server([reply("Calling.", call("run_script", command="python make_index.py --fast"),
                                usage=(10, 5))])
    chat = ChatOpenAI(base_url=server.url, api_key="x", model=MODEL, max_retries=0, timeout=2, stream_usage=True)
    chunks = list(chat.bind_tools(RUN_SCRIPT_SCHEMA).stream("index it"))
    assert len(chunks) > 5
    message = chunks[0]
    for chunk in chunks[1:]:
        message += chunk
    assert message.content == "Calling."
    assert message.tool_calls == [{"name": "run_script", "args": {"command": "python make_index.py --fast"},
                                   "id": "call_1_0", "type": "tool_call"}]
    assert message.usage_metadata["total_tokens"] == 15



# -- the command line, as a benchmark's fault suite will start it --------------------
def test_command_line_serves_a_script_file(tmp_path):
    script, log = tmp_path / "script.json", tmp_path / "requests.jsonl"
    script.write_text(json.dumps({"turns": [{"status": 500}, {"content": "pong", "usage": [3, 1]}]}))
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("chat_server.py")), str(script),
                                "--port", "0", "--log", str(log), "--exit-when-done"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        chat = ChatOpenAI(base_url=url, api_key="x", model=MODEL, max_retries=1, timeout=2)
        assert chat.invoke("ping").content == "pong"  # the client's own retry got past the 500
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [json.loads(line)["messages"][0]["content"] for line in log.read_text().splitlines()] == ["ping", "ping"]
    assert "served 2 turns" in process.stderr.read()
