"""The tools as LangChain tools: text observations in, errors as observations, never raised.

Each LangChain tool wraps one function of `TOOLS` with the workspace bound: its
schema and description come from the function's signature and Google-style
docstring (``parse_docstring=True``), minus the ``ctx`` argument. A `ToolError`
(a mistake in the call), any other exception, and invalid arguments all come back
as the observation text starting with "Error:", with the ToolMessage status "error".
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Iterable

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import ValidationError

from medbuilder.protocol.tools.context import ToolError, Workspace
from medbuilder.protocol.tools.registry import TOOLS, ToolSpec

log = logging.getLogger(__name__)


def langchain_tools(ctx: Workspace, names: Iterable[str] | None = None) -> list[BaseTool]:
    """LangChain tools bound to `ctx`, for all 13 tools or the `names` given (in that order)."""
    chosen = list(TOOLS) if names is None else list(names)
    unknown = [n for n in chosen if n not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tool name(s) {unknown}; valid: {list(TOOLS)}")
    return [as_langchain_tool(ctx, TOOLS[name]) for name in chosen]


def render(result: object) -> str:
    """The text the model reads for a tool's structured result."""
    if isinstance(result, list):
        return "\n\n".join(render(item) for item in result)
    return result.as_text() if hasattr(result, "as_text") else str(result)


def as_langchain_tool(ctx: Workspace, spec: ToolSpec) -> StructuredTool:
    function = spec.function
    signature = inspect.signature(function)
    params = list(signature.parameters.values())[1:]  # drop ctx
    hints = typing.get_type_hints(function)

    def call(**kwargs: typing.Any) -> str:
        try:
            result = function(ctx, **kwargs)
        except ToolError as err:
            raise ToolException(f"Error: {err}") from err
        except Exception as err:  # an unexpected failure is reported to the model, and logged for people
            log.exception("tool %s failed on %s", spec.name, kwargs)
            raise ToolException(
                f"Error: {spec.name} failed unexpectedly ({type(err).__name__}: {err}). "
                "Check the arguments; if they are right, try another way."
            ) from err
        return ctx.cut(render(result), ctx.output_chars * 2)

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
    def message(err: ValidationError) -> str:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in err.errors())
        return f"Error: invalid arguments for {name}: {problems}. Check the tool's argument names and types."

    return message
