"""The tools as LangChain tools: text observations in, errors as observations, never raised.

Each LangChain tool wraps one function of `TOOLS` with the workspace bound: its
schema and description come from the function's signature and Google-style
docstring (``parse_docstring=True``), minus the ``ctx`` argument. A `ToolError`
(a mistake in the call), any other exception, and invalid arguments all come back
as the observation text starting with "Error:", with the ToolMessage status "error".
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import ValidationError

from medbuilder.protocol.tools.calls import call_tool, invalid_arguments
from medbuilder.protocol.tools.context import Workspace
from medbuilder.protocol.tools.registry import TOOLS, ToolSpec


def langchain_tools(ctx: Workspace, names: Iterable[str] | None = None) -> list[BaseTool]:
    """LangChain tools bound to `ctx`, for all 13 tools or the `names` given (in that order)."""
    chosen = list(TOOLS) if names is None else list(names)
    unknown = [n for n in chosen if n not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tool name(s) {unknown}; valid: {list(TOOLS)}")
    return [as_langchain_tool(ctx, TOOLS[name]) for name in chosen]


def as_langchain_tool(ctx: Workspace, spec: ToolSpec) -> StructuredTool:
    function = spec.function
    signature = inspect.signature(function)
    params = list(signature.parameters.values())[1:]  # drop ctx
    hints = typing.get_type_hints(function)

    def call(**kwargs: typing.Any) -> str:
        outcome = call_tool(ctx, spec, kwargs)
        if outcome.raised:
            raise ToolException(outcome.text)
        return outcome.text

    call.__signature__ = signature.replace(parameters=params, return_annotation=str)
    call.__annotations__ = {p.name: hints[p.name] for p in params} | {"return": str}
    call.__doc__ = function.__doc__
    call.__name__ = call.__qualname__ = spec.name
    return StructuredTool.from_function(
        call,
        name=spec.name,
        description=model_description(function),
        parse_docstring=True,
        error_on_invalid_docstring=True,
        handle_tool_error=True,
        handle_validation_error=_validation_message(spec.name),
        metadata={"category": spec.category},
    )


def model_description(function: typing.Callable) -> str:
    """The docstring's paragraphs before 'Args:', each on one line: what the model reads about the tool."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    kept = []
    for paragraph in paragraphs:
        if paragraph.startswith("Args:"):
            break
        kept.append(" ".join(paragraph.split()))
    return "\n\n".join(kept)


def _validation_message(name: str) -> typing.Callable[[ValidationError], str]:
    return lambda err: invalid_arguments(name, err)
