"""The LLM core: a tool-calling loop over `langchain-openai` against any OpenAI-compatible endpoint.

Model mistakes go back to the model as observations (an unknown tool, arguments
that are not valid JSON, a failing script); a reply the client cannot turn into a
message at all (tool-call arguments that are JSON but not an object) goes back as
a note, and ends the attempt with ``exit_format`` when it happens
``format_retries + 1`` times in a row. Endpoint faults (connection errors,
timeouts, HTTP 429 and 5xx) are retried with exponential backoff (at least the
server's ``Retry-After``, up to a minute) and, when they persist, end the attempt
with the named status ``exit_endpoint``; so does an answer that is not JSON.
``max_steps`` bounds tool calls, as for the offline core: once they are spent, a
reply that asks for more ends the attempt with ``exit_step_limit``.
"""

from __future__ import annotations

import json
import time

import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import ValidationError

from medbuilder.agents.core import AgentCore, AgentExit, RoleJob
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)
MAX_RETRY_AFTER_S = 60.0


class LlmCore(AgentCore):
    name = "llm"

    def __init__(self, chat: ChatOpenAI, model: str, max_steps: int, endpoint_retries: int = 4, backoff_s: float = 1.0,
                 format_retries: int = 2):
        self.chat, self.model, self.max_steps = chat, model, max_steps
        self.endpoint_retries, self.backoff_s, self.format_retries = endpoint_retries, backoff_s, format_retries

    @classmethod
    def from_settings(cls, settings) -> "LlmCore":
        chat = ChatOpenAI(base_url=settings.llm_base_url, model=settings.llm_model,
                          api_key=settings.llm_api_key.get_secret_value(), max_retries=0,
                          timeout=settings.llm_timeout_s, temperature=0)
        return cls(chat, settings.llm_model, settings.max_steps, settings.llm_retries, settings.llm_backoff_s)

    def run(self, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        trajectory.model = self.model
        bound = self.chat.bind_tools(toolbox.langchain_tools())
        messages = [SystemMessage(job.system_prompt), HumanMessage(job.brief)]
        trajectory.add_message("system", job.system_prompt)
        trajectory.add_message("user", job.brief)
        unreadable = 0
        while True:  # every turn that is not the last runs a tool call, so max_steps bounds the turns too
            try:
                reply = self._invoke(bound, messages, trajectory)
            except ValidationError as err:  # e.g. tool-call arguments that are a JSON list, not an object
                unreadable += 1
                problem = " ".join(str(err).split())[:300]
                if unreadable > self.format_retries:
                    raise AgentExit("exit_format", f"{unreadable} replies in a row could not be read: {problem}") from err
                note = (f"Error: your last reply could not be read ({problem}). Call a tool with a JSON object "
                        "of arguments, or reply with text and no tool call when you are done.")
                messages.append(HumanMessage(note))
                trajectory.add_message("user", note)
                continue
            unreadable = 0
            messages.append(reply)
            self._record(reply, trajectory)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                return str(reply.content or "")
            if trajectory.actions >= self.max_steps:
                raise AgentExit("exit_step_limit", f"step limit {self.max_steps} reached")
            messages.extend(self._observe(reply, toolbox, trajectory))

    def _invoke(self, bound, messages, trajectory: Trajectory) -> AIMessage:
        for attempt in range(self.endpoint_retries + 1):
            try:
                return bound.invoke(messages)
            except RETRYABLE as err:
                if attempt == self.endpoint_retries:
                    raise AgentExit("exit_endpoint", f"endpoint failed {attempt + 1} times: {type(err).__name__}: {err}") from err
                trajectory.endpoint_retries += 1
                trajectory.save()
                time.sleep(self._delay(err, attempt))
            except openai.APIStatusError as err:  # 400, 401, 404: retrying will not help
                raise AgentExit("exit_endpoint", f"endpoint refused the request: {err}") from err
            except json.JSONDecodeError as err:  # a web page or proxy answered, not a chat-completions API
                raise AgentExit("exit_endpoint", f"the endpoint's answer is not JSON ({err}); check that "
                                f"llm_base_url ({self.chat.openai_api_base}) is an OpenAI-compatible API, "
                                "usually ending in /v1") from err
        raise AssertionError("unreachable")

    def _delay(self, err: Exception, attempt: int) -> float:
        """Exponential backoff, but no sooner than the server's Retry-After (in seconds, capped)."""
        delay = self.backoff_s * 2**attempt
        response = getattr(err, "response", None)
        try:
            asked = float(response.headers.get("retry-after", 0)) if response is not None else 0.0
        except ValueError:  # an HTTP date: keep the backoff
            asked = 0.0
        return max(delay, min(asked, MAX_RETRY_AFTER_S))

    @staticmethod
    def _record(reply: AIMessage, trajectory: Trajectory) -> None:
        usage = reply.usage_metadata or {}
        trajectory.tokens.prompt += usage.get("input_tokens", 0)
        trajectory.tokens.completion += usage.get("output_tokens", 0)
        calls = [{"id": c["id"], "name": c["name"], "args": c["args"]} for c in reply.tool_calls]
        calls += [{"id": c["id"], "name": c["name"], "args": c.get("args"), "invalid": c.get("error")}
                  for c in reply.invalid_tool_calls]
        trajectory.add_message("assistant", str(reply.content or "") or None, tool_calls=calls)

    @staticmethod
    def _observe(reply: AIMessage, toolbox: Toolbox, trajectory: Trajectory) -> list[ToolMessage]:
        answers = []
        for bad in reply.invalid_tool_calls:
            text = (f"Error: the arguments of your call to '{bad['name']}' are not valid JSON "
                    f"({bad.get('error') or 'could not parse'}). Send the call again with a JSON object of arguments.")
            trajectory.add_step(bad["name"] or "(unnamed)", {"raw": bad.get("args")}, False, text, 0.0)
            answers.append(ToolMessage(text, tool_call_id=bad["id"], name=bad["name"] or "", status="error"))
        for call in reply.tool_calls:
            observation = toolbox.call(call["name"], call["args"])
            answers.append(ToolMessage(observation.text, tool_call_id=call["id"], name=call["name"],
                                       status="success" if observation.ok else "error"))
        for answer in answers:
            trajectory.add_message("tool", answer.content, tool_call_id=answer.tool_call_id, name=answer.name)
        return answers
