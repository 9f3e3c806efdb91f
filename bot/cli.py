"""The `domainbot` command line. Each command only wires settings, the model and a front end together."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot import __version__
from bot.config import Settings, describe_settings, load_settings
from bot.errors import DomainbotError

app = typer.Typer(
    help="domainbot: a chat bot that is an expert in one domain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
model_app = typer.Typer(help="Prepare and inspect the language model.", no_args_is_help=True)
app.add_typer(config_app, name="config")
eval_app = typer.Typer(help="Evaluate retrieval, guardrails and models on data sets.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(eval_app, name="eval")

err_console = Console(stderr=True)


class _State:
    config_file: Path | None = None
    debug: bool = False


state = _State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"domainbot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings file (environment overrides it).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """domainbot: a chat bot that is an expert in one domain."""
    state.config_file = config
    state.debug = debug


def settings() -> Settings:
    loaded = load_settings(state.config_file)
    logging.basicConfig(level=loaded.log_level, format="%(levelname)s %(name)s: %(message)s")
    return loaded


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the effective settings; secrets are redacted."""
    rows = describe_settings(settings())
    if as_json:
        typer.echo(json.dumps({name: value for name, value, _, _ in rows}, indent=2))
        return
    table = Table("setting", "value", "environment variable")
    for name, value, env, _ in rows:
        table.add_row(name, value, env)
    Console().print(table)


from bot.commands.guardrails import eval_guardrails, guard_app  # noqa: E402
app.add_typer(guard_app, name="guard")
eval_app.command("guardrails")(eval_guardrails)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 1 (`--debug` for the trace)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="domainbot")
    except DomainbotError as exc:
        if state.debug or "--debug" in args:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
