"""`domainbot feedback export` and `domainbot feedback stats`: ratings and corrections as training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from bot.errors import DomainbotError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.feedback import FeedbackStore
    from training.datasets import RowStyle
    from training.export import ExportFormat, Mask

feedback_app = typer.Typer(help="Turn ratings and corrections into training data.", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _open(config: Settings) -> tuple[FeedbackStore, Mask]:
    # Imported here, not at the top: every `domainbot` command imports this module to register it.
    from bot.feedback import FEEDBACK_FILE, FeedbackStore
    from guardrails import Guardrails, PolicyError

    path = config.data_dir / FEEDBACK_FILE
    if not path.is_file():
        raise DomainbotError(
            f"No feedback store at {path} yet. Chat with the bot (`domainbot chat`) and rate answers first, "
            "or set DOMAINBOT_DATA_DIR to the data folder that holds it."
        )
    try:
        guard = Guardrails.load(config.guardrails_policy)
    except PolicyError as exc:
        raise DomainbotError(
            f"Guardrail policy rejected: {exc}. Its PII rules mask the exports; fix the file."
        ) from None
    return FeedbackStore(path), guard.mask_pii


@feedback_app.command("export")
def feedback_export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="sft, dpo or kto.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the file and its card (default: <data_dir>/exports).")
    ] = None,
    style: Annotated[
        str,
        typer.Option(
            help="trl: TRL's conversational rows; llamafactory: ShareGPT rows with OpenAI tags (same SFT rows)."
        ),
    ] = "trl",
    as_json: AsJson = False,
) -> None:
    """Write SFT rows, DPO pairs or KTO rows from the feedback store, with a dataset card beside the file."""
    from bot.cli import settings
    from training.export import EXPORT_FORMATS, EXPORT_STYLES, EXPORTS_DIR, export_feedback

    if fmt not in EXPORT_FORMATS:
        raise DomainbotError(f"Expected --format sft, dpo or kto, got {fmt!r}.")
    if style not in EXPORT_STYLES:
        raise DomainbotError(f"Expected --style {' or '.join(EXPORT_STYLES)}, got {style!r}.")
    config = settings()
    store, mask = _open(config)
    try:
        # Both checked against the allowed names above.
        export_format, row_style = cast("ExportFormat", fmt), cast("RowStyle", style)
        summary = export_feedback(
            store, export_format, out or config.data_dir / EXPORTS_DIR, style=row_style, mask=mask
        )
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(summary.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    typer.echo(f"wrote {summary.rows} {fmt.upper()} row(s), {summary.style} style, to {summary.path}")
    typer.echo(f"card: {summary.card_path}")
    if summary.info_path is not None:
        typer.echo(f"LLaMA-Factory: dataset {summary.path.stem!r} in {summary.info_path}")
    typer.echo(
        f"{summary.interactions} interactions, {summary.used} with feedback; {_counts(summary.skipped, 'skipped')}"
    )
    typer.echo(f"{summary.duplicates_removed} duplicates removed; {_counts(summary.details, 'rows built')}")


def _counts(counts: dict[str, Any], what: str) -> str:
    listed = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
    return f"{what}: {listed}" if listed else f"nothing {what}"


@feedback_app.command("stats")
def feedback_stats(as_json: AsJson = False) -> None:
    """Ratings and corrections in the store, and how many rows each export would hold now."""
    from bot.cli import settings
    from training.export import preview_feedback

    store, mask = _open(settings())
    try:
        counts, preview = store.stats(), preview_feedback(store, mask)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**counts, "exportable": preview}, ensure_ascii=False, indent=2))
        return
    table = Table("statistic", "value")
    rows: list[tuple[str, Any]] = [*counts.items(), ("usable interactions", preview["used"])]
    rows += [(f"skipped: {reason}", n) for reason, n in preview["skipped"].items()]
    rows += [(f"{fmt} rows", n) for fmt, n in preview["rows"].items()]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)
