"""`domainbot kb ...` (manage and search the knowledge base) and `domainbot eval retrieval`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot.errors import DomainbotError
from bot.services import knowledge_config
from knowledge import KnowledgeBase, KnowledgeError, SearchMode

kb_app = typer.Typer(help="Add, list, remove and search the documents the bot cites.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _knowledge_base() -> Iterator[KnowledgeBase]:
    from bot.cli import settings

    with _user_errors():
        kb = KnowledgeBase(knowledge_config(settings()))
        try:
            yield kb
        finally:
            kb.close()


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except KnowledgeError as exc:
        raise DomainbotError(str(exc)) from None


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@kb_app.command("add")
def kb_add(
    paths: Annotated[
        list[str], typer.Argument(help="Files, folders (searched recursively) or glob patterns.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Add documents; unchanged files are skipped, changed ones replaced. Exit code 1 if any file failed."""
    with _knowledge_base() as kb:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("reading", total=None)

            def advance(name: str, done: int, total: int) -> None:
                bar.update(task, description=Path(name).name[:40], completed=done, total=total)

            report = kb.add(paths, progress=advance)
    if as_json:
        _print_json(report.to_json())
    else:
        console = Console()
        for failure in report.failed:
            console.print(f"[red]failed[/] {failure.name}: {failure.reason}", highlight=False, soft_wrap=True)
        summary = report.summary()
        console.print(", ".join(f"{count} {outcome}" for outcome, count in summary.items()))
    if not report.ok:
        raise typer.Exit(1)


@kb_app.command("list")
def kb_list(as_json: JsonOption = False) -> None:
    """List the documents in the knowledge base."""
    with _knowledge_base() as kb:
        records = kb.sources()
    if as_json:
        _print_json([vars(r) for r in records])
        return
    table = Table("source", "title", "chunks", "added")
    for r in records:
        table.add_row(r.source, r.title, str(r.chunks), r.added_at)
    Console().print(table)


@kb_app.command("remove")
def kb_remove(
    source: Annotated[str, typer.Argument(help="A source as `kb list` shows it, or a path to that file.")],
    as_json: JsonOption = False,
) -> None:
    """Remove a document and all its passages from both indexes."""
    with _knowledge_base() as kb:
        chunks = kb.remove(source)
    if as_json:
        _print_json({"removed": source, "chunks": chunks})
    else:
        typer.echo(f"removed {source} ({chunks} chunks)")


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many passages to show.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    as_json: JsonOption = False,
) -> None:
    """Show the passages that best match a query, with source, location and score."""
    if mode not in ("hybrid", "dense", "lexical"):
        raise DomainbotError(f"Expected --mode hybrid, dense or lexical, got {mode!r}.")
    search_mode: SearchMode = mode  # type: ignore[assignment]
    with _knowledge_base() as kb:
        passages = kb.search(query, k, search_mode)
    if as_json:
        _print_json([p.to_json() for p in passages])
        return
    table = Table("score", "source", "location", "text", show_lines=True)
    for p in passages:
        text = p.text if len(p.text) <= 300 else p.text[:300] + "…"
        flag = " [red](possible prompt injection)[/]" if p.injection_suspected else ""
        table.add_row(f"{p.score:.3f}", p.source, str(p.location), text + flag)
    Console().print(table)


@kb_app.command("stats")
def kb_stats(as_json: JsonOption = False) -> None:
    """Counts of documents, chunks, vectors and lexical terms, and the store's size."""
    with _knowledge_base() as kb:
        stats = kb.stats()
    if as_json:
        _print_json(stats)
        return
    table = Table("statistic", "value")
    for name, value in stats.items():
        table.add_row(name, str(value))
    Console().print(table)


def eval_retrieval(
    korquad: Annotated[Path, typer.Option("--korquad", help="KorQuAD v1.0 JSON file (e.g. the dev set).")],
    max_articles: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N articles (a quick run).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recall@1/5/20 of dense, lexical and hybrid search over KorQuAD paragraphs, its questions as queries."""
    from bot.cli import settings
    from knowledge.evaluation import evaluate_korquad

    if not korquad.is_file():
        raise DomainbotError(
            f"KorQuAD file {korquad} does not exist. Expected the path to a KorQuAD v1.0 JSON."
        )
    config = knowledge_config(settings())
    with _user_errors():
        try:
            result = evaluate_korquad(korquad, config, max_articles=max_articles)
        except ValueError as exc:
            raise DomainbotError(str(exc)) from None
    if as_json:
        _print_json(result)
        return
    table = Table("retriever", "recall@1", "recall@5", "recall@20")
    for name in ("dense", "lexical", "hybrid"):
        table.add_row(name, *(f"{value:.4f}" for value in result[name].values()))
    Console().print(table)
    Console().print(
        f"{result['documents']} documents, {result['questions']} questions, {result['seconds']['total']} s"
    )
