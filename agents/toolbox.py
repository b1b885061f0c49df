"""A role's tools over the run's workspace: one place that executes and records every call.

Both cores call tools through a `Toolbox`, so confinement, error text and the
trajectory step records are the same whether an LLM or an offline policy acts.
A failed call is an observation starting with "Error:", never an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from medbuilder.agents.trajectory import Trajectory
from medbuilder.agents.work_tools import WORK_TOOLS
from medbuilder.protocol.tools import TOOLS, Workspace, as_langchain_tool, call_tool, invalid_arguments

SPECS = {**TOOLS, **WORK_TOOLS}


@dataclass
class Observation:
    text: str
    ok: bool
    result: Any = None


class Toolbox:
    def __init__(self, workspace: Workspace, names: list[str], trajectory: Trajectory):
        self.workspace, self.names, self.trajectory = workspace, list(names), trajectory
        unknown = [n for n in self.names if n not in SPECS]
        if unknown:
            raise ValueError(f"unknown tool name(s) {unknown}; valid: {list(SPECS)}")
        self._schemas = {name: as_langchain_tool(workspace, SPECS[name]) for name in self.names}

    def langchain_tools(self):
        return list(self._schemas.values())

    def call(self, name: str, args: dict[str, Any] | None) -> Observation:
        started = time.monotonic()
        observation = self._execute(name, args or {})
        self.trajectory.add_step(name, args or {}, observation.ok, observation.text, time.monotonic() - started,
                                 limit=getattr(observation.result, "limit", None))
        return observation

    def _execute(self, name: str, args: dict[str, Any]) -> Observation:
        if name not in self._schemas:
            return Observation(f"Error: unknown tool '{name}'. Tools you can call: {', '.join(self.names)}.", False)
        try:
            checked = self._schemas[name].args_schema.model_validate(args)
        except ValidationError as err:
            return Observation(invalid_arguments(name, err), False)
        kwargs = {k: v for k, v in checked.model_dump().items() if k in args}
        outcome = call_tool(self.workspace, SPECS[name], kwargs)
        return Observation(outcome.text, outcome.ok, outcome.result)
