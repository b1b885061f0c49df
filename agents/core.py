"""The agent-core interface: one job in, tool calls through a Toolbox, a final summary out.

Two cores implement it with the same toolset and the same trajectory format:
`OfflineCore` runs a deterministic policy per role (the default, no LLM), and
`LlmCore` (``medbuilder.agents.llm_core``) runs a tool-calling loop against any
OpenAI-compatible endpoint.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medbuilder.agents.toolbox import Observation, Toolbox
from medbuilder.agents.trajectory import Trajectory


class AgentExit(Exception):
    """An attempt that ended without a submission; `status` is the trajectory's exit status."""

    def __init__(self, status: str, message: str):
        self.status = status
        super().__init__(message)


@dataclass
class RoleJob:
    role: str
    system_prompt: str
    brief: str
    policy: Callable[["RoleJob", "Actor"], str]
    context: dict[str, Any] = field(default_factory=dict)


class Actor:
    """What an offline policy acts through: each call is recorded as an assistant tool call."""

    def __init__(self, toolbox: Toolbox, trajectory: Trajectory, max_steps: int):
        self.toolbox, self.trajectory, self.max_steps = toolbox, trajectory, max_steps

    def __call__(self, tool: str, thought: str = "", **args: Any) -> Observation:
        if self.trajectory.actions >= self.max_steps:
            raise AgentExit("exit_step_limit", f"step limit {self.max_steps} reached")
        call_id = f"call_{self.trajectory.actions}"
        self.trajectory.add_message("assistant", thought or None,
                                    tool_calls=[{"id": call_id, "name": tool, "args": args}])
        observation = self.toolbox.call(tool, args)
        self.trajectory.add_message("tool", observation.text, tool_call_id=call_id, name=tool)
        return observation

    def expect(self, tool: str, thought: str = "", **args: Any) -> Observation:
        """A call whose failure leaves the policy no way on: raise with the observation."""
        observation = self(tool, thought, **args)
        if not observation.ok:
            raise AgentExit("exit_error", f"{tool} failed: {observation.text[-1500:]}")
        return observation


class AgentCore(ABC):
    name: str
    model: str | None = None
    deterministic: bool = False  # the same inputs always give the same attempt (an attempt can be known to repeat)

    @abstractmethod
    def run(self, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        """Act on the job; return the final summary or raise AgentExit."""


class OfflineCore(AgentCore):
    """Deterministic policies, one per role, acting through the same tools. No LLM."""

    name = "offline"
    deterministic = True

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def run(self, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        trajectory.add_message("system", job.system_prompt)
        trajectory.add_message("user", job.brief)
        final = job.policy(job, Actor(toolbox, trajectory, self.max_steps))
        trajectory.add_message("assistant", final)
        return final


def make_core(name: str, settings) -> AgentCore:
    if name == "offline":
        return OfflineCore(settings.max_steps)
    if name == "llm":
        from medbuilder.agents.llm_core import LlmCore

        return LlmCore.from_settings(settings)
    raise ValueError(f"unknown agent core '{name}'; use 'offline' or 'llm'")


def args_text(args: dict) -> str:
    return json.dumps(args, ensure_ascii=False)[:300]
