"""One small tool-calling request to the configured endpoint: is it there, which model answers, how fast,
and do tool calls work (`medbuilder llm check`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import openai
from langchain_core.messages import HumanMessage

from medbuilder.agents.llm_client import MedbuilderChat

ECHO_TOOL = {"type": "function", "function": {
    "name": "echo", "description": "Repeat a word back.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string", "description": "The word."}},
                   "required": ["word"]}}}
ASK = "Call the tool echo with the word 'ready'. Do not answer in text."


@dataclass
class EndpointCheck:
    endpoint: str
    model_asked: str
    ok: bool
    tool_calls: bool = False
    model: str | None = None  # the model the endpoint says answered
    seconds: float | None = None
    tokens: dict | None = None
    problem: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_endpoint(settings) -> EndpointCheck:
    chat = MedbuilderChat(base_url=settings.llm_base_url, model=settings.llm_model, max_retries=0,
                          api_key=settings.llm_api_key.get_secret_value(), timeout=settings.llm_timeout_s,
                          temperature=0)
    result = EndpointCheck(endpoint=settings.llm_base_url, model_asked=settings.llm_model, ok=False)
    started = time.monotonic()
    try:
        reply = chat.bind_tools([ECHO_TOOL]).invoke([HumanMessage(ASK)])
    except (openai.APIConnectionError, openai.APITimeoutError) as err:
        result.problem = (f"cannot reach {settings.llm_base_url} ({type(err).__name__}): start the server, or set "
                          "MEDBUILDER_LLM_BASE_URL to its address (it usually ends in /v1)")
        return result
    except openai.APIStatusError as err:
        result.problem = f"the endpoint refused the request (HTTP {err.status_code}): {_short(err)}{_hint(err)}"
        return result
    except (json.JSONDecodeError, ValueError) as err:
        result.problem = (f"the answer is not a chat-completions reply ({_short(err)}): check that "
                          f"MEDBUILDER_LLM_BASE_URL ({settings.llm_base_url}) is an OpenAI-compatible API")
        return result
    result.seconds = round(time.monotonic() - started, 2)
    result.model = (reply.response_metadata or {}).get("model_name")
    usage = chat.take_usage()
    if usage is not None:
        result.tokens = {"prompt": usage.prompt, "completion": usage.completion, "estimated": usage.estimated}
    called = [c for c in reply.tool_calls if c["name"] == "echo"]
    result.tool_calls = bool(called) and isinstance(called[0]["args"].get("word"), str)
    result.ok = result.tool_calls
    if not result.ok:
        said = " ".join(str(reply.content or "").split())[:200]
        result.problem = ("the model answered without calling the tool" + (f" ({said!r})" if said else "") +
                          ": medbuilder's agents act only through tool calls. Serve a model that supports them "
                          "and enable tool calling on the server (README: 'LLM endpoints')")
    return result


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:300]


def _hint(err: openai.APIStatusError) -> str:
    if err.status_code == 401:
        return "; set MEDBUILDER_LLM_API_KEY (or OPENAI_API_KEY)"
    if err.status_code == 404:
        return "; check MEDBUILDER_LLM_MODEL and that MEDBUILDER_LLM_BASE_URL ends in /v1"
    if err.status_code == 400 and "tool" in str(err).lower():
        return "; the server does not accept tools: enable tool calling (README: 'LLM endpoints')"
    return ""
