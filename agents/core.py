"""The agent-core interface: one job in, tool calls through a Toolbox, a final summary out.

Both cores run the same tool-calling loop (``loop.py``) with the same toolset and trajectory format; they
differ only in the model: `OfflineCore` (``scripted.py``: a deterministic policy per role, the default, no LLM)
and `LlmCore` (``llm_core.py``: any OpenAI-compatible endpoint).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medbuilder.agents.toolbox import Toolbox
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
    policy: Callable[..., str]  # the offline core's moves: (job, Actor) -> final summary
    context: dict[str, Any] = field(default_factory=dict)


class AgentCore(ABC):
    name: str
    model: str | None = None
    deterministic: bool = False  # the same inputs always give the same attempt (an attempt can be known to repeat)

    @abstractmethod
    def run(self, job: RoleJob, toolbox: Toolbox, trajectory: Trajectory) -> str:
        """Act on the job; return the final summary or raise AgentExit."""
