"""One JSON trajectory per role attempt, saved after every step.

Both agent cores write the same format: the messages (system, user, assistant
with tool calls, tool results), one step record per tool call, token counts and
timings, and the named exit status. Tests and the dashboard read these files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

FORMAT_VERSION = 1

Status = Literal["running", "submitted", "exit_step_limit", "exit_format", "exit_endpoint", "exit_error",
                 "exit_no_alternative"]


class Step(BaseModel):
    index: int
    tool: str
    args: dict[str, Any]
    ok: bool
    observation_chars: int
    seconds: float
    limit: str | None = Field(None, description="run_script: the sandbox limit that ended the command (memory, "
                                                 "time, ...), None when it ended by itself.")


class Tokens(BaseModel):
    prompt: int = 0
    completion: int = 0
    estimated_replies: int = Field(0, description="Replies whose counts are estimates from characters (the endpoint "
                                                  "sent no usage for them); the counts include them.")

    def add(self, prompt: int, completion: int, estimated: bool = False) -> None:
        self.prompt += prompt
        self.completion += completion
        self.estimated_replies += int(estimated)

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class Trajectory(BaseModel):
    format_version: int = FORMAT_VERSION
    role: str
    attempt: int
    core: str
    model: str | None = None
    stage: str | None = Field(None, description="The stage record this attempt counts towards (model_trainer-1: "
                                                "refinement round 1); None: the role's own name.")
    feedback_in: str | None = Field(None, description="The failed check's feedback this attempt started from.")
    inputs: str | None = Field(None, description="Digest of what a deterministic core decides from (context, "
                                                 "feedback it reads, dataset file list); equal digests, equal attempts.")
    status: Status = "running"
    final: str | None = None
    error: str | None = None
    started: float = Field(default_factory=time.time)
    ended: float | None = None
    messages: list[dict[str, Any]] = []
    steps: list[Step] = []
    tokens: Tokens = Tokens()
    endpoint_retries: int = 0
    refused_calls: int = Field(0, description="Tool calls not run because the step limit was reached.")
    path: Path | None = Field(None, exclude=True)

    @property
    def actions(self) -> int:
        return len(self.steps)

    def add_message(self, role: str, content: str | None = None, **extra: Any) -> None:
        self.messages.append({"role": role, "content": content, **extra})
        self.save()

    def add_step(self, tool: str, args: dict, ok: bool, observation: str, seconds: float,
                 limit: str | None = None) -> None:
        self.steps.append(Step(index=len(self.steps), tool=tool, args=args, ok=ok, observation_chars=len(observation),
                               seconds=round(seconds, 3), limit=limit))
        self.save()

    def finish(self, status: Status, final: str | None = None, error: str | None = None) -> None:
        self.status, self.final, self.error, self.ended = status, final, error, time.time()
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json") | {"actions": self.actions}, indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> "Trajectory":
        data = json.loads(Path(path).read_text())
        data.pop("actions", None)
        return cls.model_validate(data)
