"""`domainbot adapters list|show|activate`: the adapter registry from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bot.errors import DomainbotError

if TYPE_CHECKING:
    from bot.config import Settings
    from training.registry import AdapterCard, AdapterRegistry

adapters_app = typer.Typer(
    help="List, inspect and activate the LoRA adapters of training rounds.", no_args_is_help=True
)

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
# Shown in `list`, first found first: training loss, then an evaluation's scores and its record against a baseline.
KEY_METRICS = (
    ("loss", ("final_loss",)),
    ("eval loss", ("eval", "loss")),
    ("F1", ("eval", "token_f1")),
    ("exact", ("eval", "exact")),
    ("wins", ("eval", "wins")),
    ("losses", ("eval", "losses")),
)
MAX_METRICS = 4


def _open() -> tuple[Settings, AdapterRegistry]:
    # Imported here, not at the top: every `domainbot` command imports this module to register it.
    from bot.cli import settings
    from training.registry import AdapterRegistry

    config = settings()
    return config, AdapterRegistry.in_data_dir(config.data_dir)


def _pinned_note(config: Settings) -> str | None:
    if config.adapter is None:
        return None
    return (
        f"Note: DOMAINBOT_ADAPTER pins {config.adapter}; a bot started with this configuration serves it and "
        "ignores activations. Unset it to follow the registry."
    )


@adapters_app.command("list")
def adapters_list(as_json: AsJson = False) -> None:
    """Every adapter, oldest first: kind, base model, data, key metrics; '*' marks the active one."""
    from training.registry import RegistryError

    config, registry = _open()
    listing = registry.scan()
    problems = list(listing.problems)
    try:
        active = registry.active()
    except RegistryError as exc:
        active = None
        problems.append(str(exc))
    if as_json:
        adapters = [{**card.model_dump(), "active": card.name == active} for card in listing.cards]
        typer.echo(json.dumps({"active": active, "adapters": adapters, "problems": problems}, ensure_ascii=False))
        return
    console = Console()
    if not listing.cards:
        console.print(f"No adapters in {registry.root} yet: `domainbot train sft --data FILE` makes one.")
    else:
        with_parents = any(card.parent for card in listing.cards)
        table = Table()
        table.add_column("", no_wrap=True)
        # Folded, not cut with an ellipsis, when the terminal is narrow: names are copied from here.
        table.add_column("name", overflow="fold")
        table.add_column("kind", no_wrap=True)
        table.add_column("base model", overflow="fold")
        table.add_column("created", no_wrap=True)
        table.add_column("data")
        table.add_column("metrics")
        if with_parents:
            table.add_column("parent", overflow="fold")
        for card in listing.cards:
            row = [
                "*" if card.name == active else "",
                card.name,
                card.kind,
                card.base_model,
                card.created().strftime("%Y-%m-%d %H:%M"),
                _data_summary(card),
                _metrics_summary(card.metrics),
            ]
            table.add_row(*row, *([card.parent or ""] if with_parents else []))
        console.print(table)
        console.print(f"Active: {active or 'the base model (no adapter)'}", highlight=False)
    err = Console(stderr=True)
    for problem in problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    note = _pinned_note(config)
    if note:
        console.print(note, highlight=False)


@adapters_app.command("show")
def adapters_show(name: Annotated[str, typer.Argument(help="The adapter's name.")]) -> None:
    """Print an adapter's card as JSON: data hash, training arguments, metrics, parent."""
    _config, registry = _open()
    typer.echo(registry.card(name).model_dump_json(indent=2))


@adapters_app.command("activate")
def adapters_activate(
    name: Annotated[str | None, typer.Argument(help="The adapter to serve; 'none' for the base model.")] = None,
    base: Annotated[bool, typer.Option("--base", help="Serve the base model, without an adapter.")] = False,
) -> None:
    """Make NAME the adapter the bot serves; running bots switch to it without a restart."""
    from bot.model.loader import configured_model_name
    from training.registry import RESERVED_NAMES

    if base and name is not None:
        raise DomainbotError("Give an adapter name or --base, not both.")
    if not base and name is None:
        raise DomainbotError("Name the adapter to activate (`domainbot adapters list` shows them), or pass --base.")
    config, registry = _open()
    if base or (name is not None and name.lower() in RESERVED_NAMES - {"active.json"}):
        registry.activate(None)
        typer.echo("Active: the base model (no adapter).")
    else:
        assert name is not None
        registry.activate(name, model_name=configured_model_name(config))
        typer.echo(f"Active adapter: {name}.")
    when = (
        f"within about {config.adapter_poll_seconds:g} s"
        if config.adapter_poll_seconds > 0
        else "when their next question arrives"
    )
    typer.echo(f"Running bots switch {when}; answers already being written finish as they began.")
    note = _pinned_note(config)
    if note:
        typer.echo(note)


def _data_summary(card: AdapterCard) -> str:
    parts = []
    if card.data.get("rows") is not None:
        parts.append(f"{card.data['rows']} rows")
    if card.data.get("sha256"):
        parts.append(str(card.data["sha256"])[:8])
    return " · ".join(parts)


def _metrics_summary(metrics: dict[str, Any]) -> str:
    shown = []
    for label, path in KEY_METRICS:
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown.append(f"{label} {value:.4g}")
        if len(shown) == MAX_METRICS:
            break
    if not shown:  # metrics of another shape: the first few numbers, as recorded
        numbers = [(k, v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        shown = [f"{key} {value:.4g}" for key, value in numbers[:MAX_METRICS]]
    return ", ".join(shown)
