"""The LLM core: a tool-calling loop over `langchain-openai` against any OpenAI-compatible endpoint.

Model mistakes go back to the model as observations (an unknown tool, arguments
that are not valid JSON, a failing script); endpoint faults (connection errors,
timeouts, HTTP 429 and 5xx) are retried with exponential backoff and, when they
persist, end the attempt with the named status ``exit_endpoint``.
"""

from __future__ import annotations

import time

import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI

from medbuilder.agents.core import AgentCore, AgentExit, RoleJob
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)


class LlmCore(AgentCore):
    name = "llm"

    def __init__(self, chat: ChatOpenAI, model: str, max_steps: int, endpoint_retries: int = 4, backoff_s: float = 1.0):
        self.chat, self.model, self.max_steps = chat, model, max_steps
        self.endpoint_retries, self.backoff_s = endpoint_retries, backoff_s

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
        for _ in range(self.max_steps):
            reply = self._invoke(bound, messages, trajectory)
            messages.append(reply)
            self._record(reply, trajectory)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                return str(reply.content or "")
            messages.extend(self._observe(reply, toolbox, trajectory))
        raise AgentExit("exit_step_limit", f"no final answer after {self.max_steps} model turns")

    def _invoke(self, bound, messages, trajectory: Trajectory) -> AIMessage:
        for attempt in range(self.endpoint_retries + 1):
            try:
                return bound.invoke(messages)
            except RETRYABLE as err:
                if attempt == self.endpoint_retries:
                    raise AgentExit("exit_endpoint", f"endpoint failed {attempt + 1} times: {type(err).__name__}: {err}") from err
                trajectory.endpoint_retries += 1
                trajectory.save()
                time.sleep(self.backoff_s * 2**attempt)
            except openai.APIStatusError as err:  # 400, 401, 404: retrying will not help
                raise AgentExit("exit_endpoint", f"endpoint refused the request: {err}") from err
        raise AssertionError("unreachable")

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
