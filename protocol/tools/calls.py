"""One way to call a tool and read what came back, for the LangChain tools and for medbuilder's Toolbox alike.

A mistake in the call (a `ToolError`), any other exception, and arguments that do not fit the tool's schema
all become text starting with "Error:"; the tool's result otherwise becomes the text the model reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.registry import ToolSpec

log = logging.getLogger(__name__)


@dataclass
class ToolOutcome:
    text: str
    ok: bool  # the call worked and, for a script, exited 0 in time
    result: Any = None
    raised: bool = False  # the call itself failed (an Error: text), not only the script it ran


def render(result: object) -> str:
    """The text the model reads for a tool's structured result."""
    if isinstance(result, list):
        return "\n\n".join(render(item) for item in result)
    return result.as_text() if hasattr(result, "as_text") else str(result)


def call_tool(ctx: Workspace, spec: ToolSpec, kwargs: dict[str, Any]) -> ToolOutcome:
    """Run `spec` on `kwargs` (already checked against its schema)."""
    try:
        result = spec.function(ctx, **kwargs)
    except ToolError as err:
        return ToolOutcome(f"Error: {err}", False, raised=True)
    except Exception as err:  # a tool bug must not end the agent: the model gets the message, people the log
        log.exception("tool %s failed on %s", spec.name, kwargs)
        return ToolOutcome(f"Error: {spec.name} failed unexpectedly ({type(err).__name__}: {err}). Check the "
                           "arguments; if they are right, try another way.", False, raised=True)
    ok = getattr(result, "exit_code", 0) == 0 and not getattr(result, "timed_out", False)
    return ToolOutcome(ctx.cut(render(result), ctx.output_chars * 2), ok, result)


def invalid_arguments(name: str, err: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
    return f"Error: invalid arguments for {name}: {problems}. Check the tool's argument names and types."
