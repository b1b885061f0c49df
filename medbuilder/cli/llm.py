"""`medbuilder llm ...`: the LLM agent core's endpoint."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="The LLM agent core's endpoint (MEDBUILDER_LLM_BASE_URL, MEDBUILDER_LLM_MODEL).",
                  no_args_is_help=True)


@app.command("check")
def check(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Send one tiny tool-calling request to the configured endpoint; report the model, the latency and whether
    tool calls work. Exit 1 when they do not."""
    from medbuilder.agents.llm_check import check_endpoint
    from medbuilder.settings import get_settings

    result = check_endpoint(get_settings())
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=1))
    else:
        typer.echo(f"endpoint: {result.endpoint}\nmodel asked: {result.model_asked}")
        if result.model:
            typer.echo(f"model that answered: {result.model}")
        if result.seconds is not None:
            typer.echo(f"latency: {result.seconds} s")
        if result.tokens:
            typer.echo(f"tokens: {result.tokens['prompt']} prompt, {result.tokens['completion']} completion"
                       + (" (estimated: the endpoint sent no usage)" if result.tokens["estimated"] else ""))
        typer.echo(f"tool calls: {'work' if result.tool_calls else 'do not work'}")
    if not result.ok:
        typer.secho(f"error: {result.problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
