"""The LangChain layer: the 13 tools of Table 1 and apply_layout, with names, descriptions and schemas; errors
come back as observations."""

from __future__ import annotations

import pytest
from langchain_core.messages import ToolMessage
from tools_fixtures import roots, ws  # noqa: F401 (fixtures)

from medbuilder.protocol.tools import TOOLS, langchain_tools, tool_names

TABLE_1 = {
    "workspace": [
        "list_files", "read_files", "copy_files", "write_file", "edit_file", "run_script", "preview_dirs", "preview_files",
    ],
    "medical": ["load_med_data", "check_3D", "normalize_image", "verify_report", "augment_image"],
}


def test_registry_lists_the_13_tools_of_table_1_and_apply_layout():
    assert list(TOOLS) == TABLE_1["workspace"] + TABLE_1["medical"] + ["apply_layout"]
    assert tool_names("workspace") == TABLE_1["workspace"] and tool_names("medical") == TABLE_1["medical"]
    assert tool_names("dataset") == ["apply_layout"]


def test_every_tool_has_a_name_a_description_and_an_args_schema(ws):
    tools = langchain_tools(ws)
    assert [t.name for t in tools] == list(TOOLS)
    for tool in tools:
        schema = tool.tool_call_schema.model_json_schema()
        assert len(tool.description) > 100 and "ctx" not in schema["properties"], tool.name
        assert schema["properties"], tool.name
        for name, field in schema["properties"].items():
            assert field.get("description"), f"{tool.name}.{name} has no description"
        assert tool.metadata["category"] == TOOLS[tool.name].category


def test_bad_path_becomes_an_error_observation_not_an_exception(ws, roots):
    tools = {t.name: t for t in langchain_tools(ws)}
    secret = str(roots.outside / "secret.txt")
    calls = {
        "list_files": {"path": "../outside"}, "read_files": {"paths": [secret]},
        "copy_files": {"sources": [secret], "destination": "x"}, "write_file": {"path": secret, "content": "x"},
        "edit_file": {"path": "link_out/secret.txt", "old_text": "top", "new_text": "x"},
        "run_script": {"command": "link_out/evil.py"}, "preview_dirs": {"path": "link_out"},
        "preview_files": {"path": secret}, "load_med_data": {"path": secret},
        "check_3D": {"image_path": secret, "mask_path": secret}, "normalize_image": {"path": secret, "preset": "minmax"},
        "verify_report": {"path": secret}, "augment_image": {"modality": "mri", "path": secret},
        "apply_layout": {"layout": {"task": "diagnosis", "label": {"kind": "table", "table": "../outside/secret.txt",
                                                                   "column": "label", "key_column": "image"}}},
    }
    assert set(calls) == set(TOOLS)
    for name, args in calls.items():
        observation = tools[name].invoke(args)
        assert isinstance(observation, str) and observation.startswith("Error:"), (name, observation)
        assert "outside" in observation, (name, observation)
    assert (roots.outside / "secret.txt").read_text() == "top secret\n"


def test_tool_call_error_gives_a_tool_message_with_error_status(ws):
    read = langchain_tools(ws, ["read_files"])[0]
    message = read.invoke({"type": "tool_call", "id": "call-1", "name": "read_files", "args": {"paths": ["nope.txt"]}})
    assert isinstance(message, ToolMessage) and message.status == "error" and message.tool_call_id == "call-1"
    assert "does not exist" in message.content


def test_invalid_arguments_and_tool_mistakes_are_observations(ws):
    tools = {t.name: t for t in langchain_tools(ws)}
    assert tools["read_files"].invoke({"paths": 3}).startswith("Error: invalid arguments for read_files")
    assert tools["write_file"].invoke({"path": "a.py"}).startswith("Error: invalid arguments for write_file")
    assert "unknown preset 'nope'" in tools["normalize_image"].invoke({"path": "x.npy", "preset": "nope"})
    assert "unknown modality" in tools["augment_image"].invoke({"modality": "pet"})


def test_successful_calls_return_text(ws):
    write, edit, run, read = langchain_tools(ws, ["write_file", "edit_file", "run_script", "read_files"])
    assert write.invoke({"path": "hi.py", "content": "print('hi')\n"}).startswith("Created hi.py")
    assert "Edited hi.py" in edit.invoke({"path": "hi.py", "old_text": "'hi'", "new_text": "'hello'"})
    assert "exit code 0" in run.invoke({"command": "hi.py"}) and "hello" in run.invoke({"command": "python hi.py"})
    assert "print('hello')" in read.invoke({"paths": "hi.py"})
    assert read.invoke({"paths": '["hi.py", "hi.py"]'}).count("===== hi.py") == 2  # a JSON list sent as a string


def test_unknown_tool_names_are_refused(ws):
    with pytest.raises(ValueError, match="unknown tool name"):
        langchain_tools(ws, ["read_file"])


def test_descriptions_are_the_docstring_summary_and_the_workspace_describes_itself(ws, roots):
    edit = langchain_tools(ws, ["edit_file"])[0]
    assert edit.description.startswith("Replace an exact snippet of a workspace file with new text.\n\nold_text must match")
    assert "Args:" not in edit.description and "\n\n" in edit.description
    assert str(roots.workspace) in ws.describe() and str(roots.data) in ws.describe()
