"""The offline core's model: a role's policy played as a chat model in the tool-calling loop.

The loop (``loop.py``) is the LLM core's: it sends the messages, runs the tool calls of each reply and sends
their results back. ``ScriptedModel`` answers each turn with the next tool call of the role's policy, or its
final summary. The policy runs in a thread of its own and sees only what the loop gives it: the tool results
of the messages it is sent (each ToolMessage's ``artifact`` carries the structured result beside the text).
So the offline core acts exactly as a model does, and its trajectory counts only calls whose results it read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from medbuilder.agents.core import AgentExit, RoleJob
from medbuilder.agents.loop import ToolLoop
from medbuilder.agents.toolbox import Observation, Toolbox
from medbuilder.agents.trajectory import Trajectory

T = TypeVar("T")
NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}  # no model, no tokens


class _Stopped(BaseException):
    """The loop ended while the policy still waited for a tool result: unwind the policy's thread."""


class Actor:
    """What a policy acts through: each call is a reply of the model, each return the tool's result."""

    def __init__(self, ask: Callable[[str, str, dict], Observation]):
        self._ask = ask

    def __call__(self, tool: str, thought: str = "", **args: Any) -> Observation:
        return self._ask(tool, thought, args)

    def expect(self, tool: str, thought: str = "", **args: Any) -> Observation:
        """A call whose failure leaves the policy no way on: raise with the observation."""
        observation = self(tool, thought, **args)
        if not observation.ok:
            raise AgentExit("exit_error", f"{tool} failed: {observation.text[-1500:]}")
        return observation


class ScriptedModel:
    """A chat model (``bind_tools`` and ``invoke``, as the loop uses them) whose replies are a policy's moves."""

    def __init__(self, job: RoleJob, policy: Callable[[RoleJob, Actor], str] | None = None):
        self.job, self.policy = job, policy or job.policy
        self._moves: queue.Queue = queue.Queue(maxsize=1)  # policy -> loop: ("call", ...), ("final", ...), ("raise", ...)
        self._results: queue.Queue = queue.Queue(maxsize=1)  # loop -> policy: an Observation, or None to stop
        self._thread: threading.Thread | None = None
        self._calls = 0

    def bind_tools(self, tools: list) -> "ScriptedModel":
        return self

    def invoke(self, messages: list[BaseMessage]) -> AIMessage:
        if self._thread is None:
            self._thread = threading.Thread(target=self._play, name=f"policy-{self.job.role}", daemon=True)
            self._thread.start()
        else:
            self._results.put(_last_result(messages))
        kind, *move = self._moves.get()
        if kind == "raise":
            raise move[0]
        if kind == "final":
            return AIMessage(content=move[0], usage_metadata=NO_USAGE)
        tool, thought, args = move
        self._calls += 1
        call = {"name": tool, "args": args, "id": f"call_{self._calls}", "type": "tool_call"}
        return AIMessage(content=thought, tool_calls=[call], usage_metadata=NO_USAGE)

    def close(self) -> None:
        """Unwind a policy still waiting for a result (the loop stopped: a step limit, an error)."""
        if self._thread is not None and self._thread.is_alive():
            self._results.put(None)
            self._thread.join(timeout=10)

    def _ask(self, tool: str, thought: str, args: dict) -> Observation:
        self._moves.put(("call", tool, thought, args))
        result = self._results.get()
        if result is None:
            raise _Stopped()
        return result

    def _play(self) -> None:
        try:
            final = self.policy(self.job, Actor(self._ask))
        except _Stopped:
            return
        except BaseException as err:  # AgentExit, or a bug: the loop raises it where the core was called
            self._moves.put(("raise", err))
            return
        self._moves.put(("final", final))


def _last_result(messages: list[BaseMessage]) -> Observation:
    """The result of the policy's last call: the artifact the loop attached, else the text as sent."""
    answer = next((m for m in reversed(messages) if isinstance(m, ToolMessage)), None)
    if answer is None:
        return Observation("Error: no tool result came back", False)
    if isinstance(answer.artifact, Observation):
        return answer.artifact
    return Observation(str(answer.content), answer.status != "error")


class OfflineCore(ToolLoop):
    """Deterministic policies, one per role, in the same loop and through the same tools as an LLM. No LLM."""

    name = "offline"
    deterministic = True

    def __init__(self, max_steps: int):
        super().__init__(max_steps, endpoint_retries=0)

    def chat_for(self, job: RoleJob) -> ScriptedModel:
        return ScriptedModel(job)


def play(moves: Callable[[Actor], T], workspace, tools: list[str], role: str, max_steps: int = 60) -> T:
    """medbuilder's own offline work through the tools (a datacard draft, an external set's layout): `moves`
    acts as a policy does, in the same loop; returns what `moves` returns."""
    out: dict[str, Any] = {}

    def policy(job: RoleJob, act: Actor) -> str:
        out["value"] = moves(act)
        return "done"

    trajectory = Trajectory(role=role, attempt=1, core="offline")
    job = RoleJob(role, f"medbuilder's offline {role.replace('_', ' ')}", "Act through the tools.", policy)
    OfflineCore(max_steps).run(job, Toolbox(workspace, tools, trajectory), trajectory)
    return out["value"]
