"""The `domainbot` command line. Each command only wires settings, the model and a front end together."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot import __version__
from bot.commands.adapters import adapters_app
from bot.commands.feedback import feedback_app
from bot.commands.guardrails import eval_guardrails, guard_app
from bot.commands.knowledge import eval_retrieval, kb_app
from bot.commands.publish import merge, publish
from bot.commands.serve import serve
from bot.commands.training import eval_model, train
from bot.config import Settings, describe_settings, load_settings
from bot.errors import DomainbotError
from bot.terminal import Session

# domainbot never downloads at run time: models come from local folders or what is already cached.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

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
app.add_typer(kb_app, name="kb")
app.command("merge")(merge)
app.command("publish")(publish)
eval_app.command("retrieval")(eval_retrieval)
app.add_typer(guard_app, name="guard")
app.add_typer(adapters_app, name="adapters")
eval_app.command("guardrails")(eval_guardrails)
eval_app.command("model")(eval_model)
app.command("train")(train)
app.add_typer(feedback_app, name="feedback")
app.command("serve")(serve)

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


MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Most tokens in the answer.")]
Temperature = Annotated[float | None, typer.Option(min=0.0, max=2.0, help="Sampling temperature; 0 is greedy.")]
Seed = Annotated[int | None, typer.Option(min=0, help="Seed for reproducible sampling.")]


def _with_overrides(loaded: Settings, max_tokens: int | None, temperature: float | None, seed: int | None) -> Settings:
    overrides = {"max_new_tokens": max_tokens, "temperature": temperature, "seed": seed}
    return loaded.model_copy(update={k: v for k, v in overrides.items() if v is not None})


Raw = Annotated[
    bool, typer.Option("--raw", help="The model alone: no retrieval, guardrails, computation or fact checks.")
]


def _session(settings: Settings, raw: bool) -> Session:
    if raw:
        from bot.chat import ChatSession

        return ChatSession.from_settings(settings)
    from bot.pipeline import Pipeline, PipelineSession

    return PipelineSession(Pipeline.from_settings(settings))


@app.command()
def chat(max_tokens: MaxTokens = None, temperature: Temperature = None, seed: Seed = None, raw: Raw = False) -> None:
    """Chat in the terminal: grounded, cited answers, streamed, with history. Piped: one question per line."""
    from bot.terminal import run_chat

    run_chat(_session(_with_overrides(settings(), max_tokens, temperature, seed), raw))


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with text, model, timings.")] = False,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    raw: Raw = False,
) -> None:
    """Answer one question and exit."""
    from bot.terminal import show_reply

    session = _session(_with_overrides(settings(), max_tokens, temperature, seed), raw)
    stream = not as_json and sys.stdout.isatty()
    shown: list[str] = []

    def write(piece: str) -> None:
        shown.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    reply = session.ask(question, on_piece=write if stream else None)
    if not as_json:
        show_reply(reply, sys.stdout, streamed="".join(shown) if stream else None)
        return
    data = reply.to_json()
    data["timings"] = {**session.load_timings, **data["timings"]}
    typer.echo(json.dumps(data, ensure_ascii=False))


@eval_app.command("gsm8k")
def eval_gsm8k(
    data: Annotated[Path, typer.Option("--data", help="gsm8k_test.jsonl (question, answer ending '#### N').")],
    limit: Annotated[int, typer.Option(min=0, help="Problems the bot answers (0: routing only).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Route every GSM8K problem; answer the first --limit through the pipeline and check the final numbers."""
    from itertools import count

    from bot.gsm8k import evaluate, load_problems

    problems = load_problems(data)
    answer = None
    if limit > 0:
        from bot.model.factory import pin_active_adapter
        from bot.pipeline import Pipeline

        pipeline = Pipeline.from_settings(pin_active_adapter(settings()))
        ids = count()

        def answer(question: str) -> str:
            reply = pipeline.answer(question, f"gsm8k-{next(ids)}", channel="eval", log=False)
            return reply.raw_text

    report = evaluate(problems, answer, limit).to_json()
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    for key in (
        "problems",
        "routed",
        "computation_share",
        "reference_equations",
        "reference_equations_confirmed",
        "answered",
        "model_accuracy",
        "verified_accuracy",
        "seconds_per_answer",
    ):
        if key in report:
            typer.echo(f"{key:>30}: {report[key]}")


@eval_app.command("answers")
def eval_answers(
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="JSON lines: question, source, section, expect, or covered: false "
        "(default: questions about the sample pack)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Answer only the first N questions (0: all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with every answer.")] = False,
) -> None:
    """Answer a question set through the pipeline: how many answers are grounded, cite the right source, are
    correct, and how many questions the knowledge base does not cover get an honest 'not found'."""
    from itertools import count

    from bot.answer_eval import evaluate, load_questions
    from bot.model.factory import pin_active_adapter
    from bot.pipeline import Pipeline

    items = load_questions(questions)
    items = items[:limit] if limit else items
    pipeline = Pipeline.from_settings(pin_active_adapter(settings()))
    ids = count()
    report = evaluate(items, lambda q: pipeline.answer(q, f"eval-{next(ids)}", channel="eval", log=False))
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    for grade in report.grades:
        mark = "covered" if grade.covered else "not covered"
        typer.echo(f"[{grade.path}, {grade.seconds:.1f}s, {mark}] {grade.question}\n  {grade.text}")
    for key, value in report.summary().items():
        typer.echo(f"{key:>14}: {value}")


@model_app.command("prepare")
def model_prepare() -> None:
    """Convert and cache the embedded model now (the first chat does it otherwise)."""
    from bot.config import EMBEDDED_MODEL
    from bot.model import embedded

    loaded = settings()
    if loaded.model != EMBEDDED_MODEL:
        typer.echo(f"DOMAINBOT_MODEL is {loaded.model}; only the embedded model needs preparing.")
        return
    folder, converted = embedded.ensure_embedded_model(loaded.models_dir)
    typer.echo(f"{'Converted' if converted else 'Already cached'}: {folder}")


@model_app.command("info")
def model_info(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Load the configured model and describe it."""
    from bot.model.factory import open_backend

    opened = open_backend(settings(), follow_registry=True)
    backend = opened.backend
    info = {
        "model": backend.model_name,
        "path": opened.path,
        "source": opened.source,
        "adapter": backend.adapter,
        "backend": backend.name,
        "device": opened.device,
        "dtype": opened.dtype,
        "context_window": backend.context_window(),
        "load_seconds": round(opened.timings["load"], 3),
    }
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        typer.echo(f"{key:>15}: {value}")


@app.command()
def telegram() -> None:
    """Run the Telegram bot until Ctrl-C: long polling, or a webhook with DOMAINBOT_TELEGRAM_MODE=webhook."""
    from bot.telegram import serve

    serve(settings(), announce=lambda line: typer.echo(line, err=True))


@app.command()
def start() -> None:
    """Run the bot the configuration asks for: Telegram when TELEGRAM_BOT_TOKEN is set."""
    loaded = settings()
    if loaded.telegram_bot_token is None:
        typer.echo(
            "domainbot is installed. TELEGRAM_BOT_TOKEN is not set, so there is no Telegram bot to start.\n"
            "  Chat in the terminal:   domainbot chat        (docker: docker run -it IMAGE chat)\n"
            '  Answer one question:    domainbot ask "..."\n'
            "  Run the Telegram bot:   set TELEGRAM_BOT_TOKEN and run `domainbot start` again."
        )
        return
    from bot.telegram import serve

    serve(loaded, announce=lambda line: typer.echo(line, err=True))


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
