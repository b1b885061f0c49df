"""`medbuilder llm check` against a real HTTP endpoint (tests/wire_endpoint.py): a model that calls the tool,
one that answers in text, one that reports no usage, and an address where nothing listens."""

from __future__ import annotations

import json
import socket

import pytest
from typer.testing import CliRunner
from wire_endpoint import WireEndpoint, says, tool_call

from medbuilder.cli import app
from medbuilder.settings import get_settings

runner = CliRunner()


@pytest.fixture()
def point_at(monkeypatch):
    def _point(url: str) -> None:
        monkeypatch.setenv("MEDBUILDER_LLM_BASE_URL", url)
        monkeypatch.setenv("MEDBUILDER_LLM_MODEL", "wire-model")
        monkeypatch.setenv("MEDBUILDER_LLM_TIMEOUT_S", "5")
        get_settings.cache_clear()
    yield _point
    get_settings.cache_clear()


def test_a_model_that_calls_the_tool_passes(point_at):
    with WireEndpoint(lambda body: says(None, tool_call("echo", word="ready"), usage=(61, 9))) as endpoint:
        point_at(endpoint.url)
        result = runner.invoke(app, ["llm", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["tool_calls"] and report["model"] == "wire-model"
    assert report["tokens"] == {"prompt": 61, "completion": 9, "estimated": False} and report["seconds"] < 5
    [body] = endpoint.bodies
    assert [t["function"]["name"] for t in body["tools"]] == ["echo"]


def test_a_model_that_answers_in_text_fails_and_says_why(point_at):
    with WireEndpoint(lambda body: says("Ready!")) as endpoint:
        point_at(endpoint.url)
        result = runner.invoke(app, ["llm", "check"])
    assert result.exit_code == 1
    assert "tool calls: do not work" in result.stdout and "(estimated: the endpoint sent no usage)" in result.stdout
    assert "the model answered without calling the tool ('Ready!')" in result.stderr and "LLM endpoints" in result.stderr


def test_nothing_listening_is_named_with_the_fix(point_at):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    point_at(f"http://127.0.0.1:{port}/v1")
    result = runner.invoke(app, ["llm", "check"])
    assert result.exit_code == 1 and f"cannot reach http://127.0.0.1:{port}/v1" in result.stderr
    assert "MEDBUILDER_LLM_BASE_URL" in result.stderr and "Traceback" not in result.output
