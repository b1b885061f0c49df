"""A role's tools over the run's workspace: one place that executes and records every call.

Both cores call tools through a `Toolbox`, so confinement, error text and the
trajectory step records are the same whether an LLM or an offline policy acts.
A failed call is an observation starting with "Error:", never an exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from medbuilder.agents.trajectory import Trajectory
from medbuilder.protocol.tools import TOOLS, ToolError, Workspace, langchain_tools, render

log = logging.getLogger(__name__)


@dataclass
class Observation:
    text: str
    ok: bool
    result: Any = None


class Toolbox:
    def __init__(self, workspace: Workspace, names: list[str], trajectory: Trajectory):
        self.workspace, self.names, self.trajectory = workspace, list(names), trajectory
        self._schemas = {tool.name: tool for tool in langchain_tools(workspace, self.names)}

    def langchain_tools(self):
        return list(self._schemas.values())

    def call(self, name: str, args: dict[str, Any] | None) -> Observation:
        started = time.monotonic()
        observation = self._execute(name, args or {})
        self.trajectory.add_step(name, args or {}, observation.ok, observation.text, time.monotonic() - started)
        return observation

    def _execute(self, name: str, args: dict[str, Any]) -> Observation:
        if name not in self._schemas:
            return Observation(f"Error: unknown tool '{name}'. Tools you can call: {', '.join(self.names)}.", False)
        try:
            checked = self._schemas[name].args_schema.model_validate(args)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
            return Observation(f"Error: invalid arguments for {name}: {problems}.", False)
        kwargs = {k: v for k, v in checked.model_dump().items() if k in args}
        try:
            result = TOOLS[name].function(self.workspace, **kwargs)
        except ToolError as err:
            return Observation(f"Error: {err}", False)
        except Exception as err:  # a tool bug must not end the agent; the model gets the message
            log.exception("tool %s failed", name)
            return Observation(f"Error: {name} failed unexpectedly ({type(err).__name__}: {err}).", False)
        ok = getattr(result, "exit_code", 0) == 0 and not getattr(result, "timed_out", False)
        return Observation(self.workspace.cut(render(result), self.workspace.output_chars * 2), ok, result)
