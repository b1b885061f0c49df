"""The tool-calling loop both agent cores run: a chat model's replies in, their tool calls run through the
Toolbox, the results sent back, until a reply without a tool call (the final summary).

The LLM core (``llm_core.py``) runs it against an OpenAI-compatible endpoint through `langchain-openai`; the
offline core (``scripted.py``) runs it with a role's policy as the model.

Model mistakes go back to the model as observations (an unknown tool, arguments
that are not valid JSON, a failing script); a reply the client cannot turn into a
message at all (tool-call arguments that are JSON but not an object) goes back as
a note, and ends the attempt with ``exit_format`` when it happens
``format_retries + 1`` times in a row. Endpoint faults (connection errors,
timeouts, HTTP 429 and 5xx) are retried with exponential backoff (at least the
server's ``Retry-After``, up to a minute) and, when they persist, end the attempt
with the named status ``exit_endpoint``; so does an answer that is not JSON.
``max_steps`` bounds tool calls, parallel calls included:
the calls of one reply beyond what is left are not run but answered with a refusal,
and a reply that asks for more once none is left ends the attempt with
``exit_step_limit``. Every reply's tokens are counted (the endpoint's usage, or an
estimate marked as one: ``MedbuilderChat``), including replies that could not be read.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod

import openai
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from medbuilder.agents.core import AgentCore, AgentExit, RoleJob
from medbuilder.agents.llm_client import CHARS_PER_TOKEN, MedbuilderChat, ReplyUsage
from medbuilder.agents.toolbox import Toolbox
from medbuilder.agents.trajectory import Trajectory

RETRYABLE = (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError, openai.InternalServerError)
MAX_RETRY_AFTER_S = 60.0


class ToolLoop(AgentCore):
    """The loop; a core says which chat model plays the role (`chat_for`)."""

    def __init__(self, max_steps: int, endpoint_retries: int = 4, backoff_s: float = 1.0, format_retries: int = 2):
        self.max_steps = max_steps
        self.endpoint_retries, self.backoff_s, self.format_retries = endpoint_retries, backoff_s, format_retries

    @abstractmethod
    def chat_for(self, job: RoleJob):
        """The chat model for this job: ``bind_tools(tools)``, then ``invoke(messages) -> AIMessage``."""

    def run(self, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        chat = self.chat_for(job)
        try:
            return self._loop(chat, job, toolbox, trajectory)
        finally:
            close = getattr(chat, "close", None)
            if close:
                close()

    def _loop(self, chat, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        trajectory.model = self.model
        bound = chat.bind_tools(toolbox.langchain_tools())
        messages = [SystemMessage(job.system_prompt), HumanMessage(job.brief)]
        trajectory.add_message("system", job.system_prompt)
        trajectory.add_message("user", job.brief)
        unreadable = 0
        while True:  # every turn that is not the last runs a tool call, so max_steps bounds the turns too
            try:
                reply = self._invoke(chat, bound, messages, trajectory)
            except ValidationError as err:  # e.g. tool-call arguments that are a JSON list, not an object
                self._count_tokens(chat, None, trajectory)
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
            _give_calls_ids(reply, len(messages))
            messages.append(reply)
            self._record(chat, reply, trajectory)
            if not reply.tool_calls and not reply.invalid_tool_calls:
                return str(reply.content or "")
            if trajectory.actions >= self.max_steps:
                raise AgentExit("exit_step_limit", f"step limit {self.max_steps} reached")
            messages.extend(self._observe(reply, toolbox, trajectory, self.max_steps - trajectory.actions))

    def _invoke(self, chat, bound, messages, trajectory: Trajectory) -> AIMessage:
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
                                f"llm_base_url ({getattr(chat, 'openai_api_base', None)}) is an OpenAI-compatible API, "
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

    def _count_tokens(self, chat, reply: AIMessage | None, trajectory: Trajectory) -> None:
        """The reply's tokens: what the client kept of the endpoint's usage (or its estimate); for a streamed
        reply, the usage that came with the stream; else an estimate from the reply's characters."""
        taken = chat.take_usage() if isinstance(chat, MedbuilderChat) else None
        if taken is None and reply is not None:
            usage = reply.usage_metadata or {}
            if usage:
                taken = ReplyUsage(usage.get("input_tokens", 0), usage.get("output_tokens", 0), estimated=False)
            else:
                chars = len(str(reply.content or "")) + len(json.dumps(reply.tool_calls, default=str))
                taken = ReplyUsage(0, chars // CHARS_PER_TOKEN, estimated=True)
        if taken is not None:
            trajectory.tokens.add(taken.prompt, taken.completion, taken.estimated)

    def _record(self, chat, reply: AIMessage, trajectory: Trajectory) -> None:
        self._count_tokens(chat, reply, trajectory)
        calls = [{"id": c["id"], "name": c["name"], "args": c["args"]} for c in reply.tool_calls]
        calls += [{"id": c["id"], "name": c["name"], "args": c.get("args"), "invalid": c.get("error")}
                  for c in reply.invalid_tool_calls]
        trajectory.add_message("assistant", str(reply.content or "") or None, tool_calls=calls)

    def _observe(self, reply: AIMessage, toolbox: Toolbox, trajectory: Trajectory, left: int) -> list[ToolMessage]:
        """Run the reply's calls, at most `left` of them; every call gets an answer (a refusal past the limit)."""
        calls = [(bad, False) for bad in reply.invalid_tool_calls] + [(call, True) for call in reply.tool_calls]
        refusal = (f"Error: not run: your reply asked for {len(calls)} tool calls and only {left} of the step limit "
                   f"{self.max_steps} were left. Reply with a summary of what you did and no tool call.")
        answers = []
        for number, (call, readable) in enumerate(calls):
            name = call["name"] or ""
            artifact = None
            if number >= left:
                trajectory.refused_calls += 1
                text, ok = refusal, False
            elif readable:
                observation = toolbox.call(name, call["args"])
                text, ok, artifact = observation.text, observation.ok, observation
            else:
                problem = call.get("error") or "could not parse"
                text, ok = (f"Error: the arguments of your call to '{name}' are not valid JSON ({problem}). "
                            "Send the call again with a JSON object of arguments."), False
                trajectory.add_step(name or "(unnamed)", {"raw": call.get("args")}, False, text, 0.0)
            answers.append(ToolMessage(text, tool_call_id=call["id"], name=name, status="success" if ok else "error",
                                       artifact=artifact))  # the structured result: never sent to an endpoint
        for answer in answers:
            trajectory.add_message("tool", answer.content, tool_call_id=answer.tool_call_id, name=answer.name)
        return answers


def _give_calls_ids(reply: AIMessage, turn: int) -> None:
    """Calls the endpoint sent without an id get one, so that their answers can name the call they answer."""
    for number, call in enumerate([*reply.invalid_tool_calls, *reply.tool_calls]):
        if not call.get("id"):
            call["id"] = f"call_{turn}_{number}"
