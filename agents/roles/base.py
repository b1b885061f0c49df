"""What every role shares: its context, its spec, and how its prompts are rendered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from medbuilder.agents.core import RoleJob
from medbuilder.agents.scripted import Actor
from medbuilder.protocol.artifacts import Feedback, Plan
from medbuilder.protocol.datacard import Datacard
from medbuilder.protocol.registry import Registry
from medbuilder.protocol.run_folder import RunFolder
from medbuilder.settings import Settings

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
_jinja = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS), undefined=jinja2.StrictUndefined,
                            keep_trailing_newline=True)


class RoleCheckFailed(Exception):
    """A role's output failed its check; `feedback` is what the next attempt starts from."""

    def __init__(self, feedback: Feedback):
        self.feedback = feedback
        history = "".join(f"\n  {line}" for line in feedback.attempts)
        super().__init__(f"{feedback.role} attempt {feedback.attempt} failed its check:\n{feedback.text()}"
                         + (f"\nHow each attempt ended:{history}" if history else ""))


class RoleGaveUp(Exception):
    """A role ended without a passing output and has nothing different left to try; not retried."""

    def __init__(self, role: str, attempt: int, status: str, problems: list[str]):
        self.role, self.attempt, self.status, self.problems = role, attempt, status, problems
        super().__init__(f"{role} gave up after attempt {attempt - 1} ({status}): "
                         f"{problems[0] if problems else 'no findings'}")


@dataclass
class RoleContext:
    run: RunFolder
    settings: Settings
    request: str
    attempt: int
    feedback: Feedback | None
    plan: Plan | None = None
    card: Datacard | None = None

    @property
    def dataset_root(self) -> Path:
        return self.run.recorded_dataset_root() or self.settings.resolve_data_path(self.card.path)

    @classmethod
    def load(cls, run: RunFolder, settings: Settings, attempt: int, feedback: Feedback | None) -> "RoleContext":
        plan = run.plan()
        card = None
        if plan and plan.status == "ok":
            card = run.datacard() or Registry(settings.datacards_dir).get(plan.dataset)
        return cls(run, settings, run.request().text, attempt, feedback, plan, card)


@dataclass
class Role:
    name: str
    tools: list[str]
    policy: Callable[[RoleJob, Actor], str]
    read_roots: Callable[[RoleContext], list[Path]]
    check: Callable[[RoleContext], list[str]]
    context: Callable[[RoleContext], dict]
    publish: Callable[[RoleContext], None] = lambda ctx: None
    after: Callable[[RoleContext], None] = lambda ctx: None  # host-side work on the output, before the check
    dataset: Callable[[RoleContext], object] | None = None  # the DatasetFacts its apply_layout tool serves
    uses_feedback: bool = True  # whether its offline policy decides differently after a failed check
    diagnose: Callable[[RoleContext], list[str]] = lambda ctx: []  # typed causes of a failed check (Feedback.kinds)
    before_script: Callable[[RoleContext], Callable | None] = lambda ctx: None  # run_script's pre-script step

    def system_prompt(self, values: dict) -> str:
        return _jinja.get_template(f"{self.name}.system.md").render(**values)

    def brief(self, values: dict) -> str:
        return _jinja.get_template(f"{self.name}.brief.md").render(**values)
