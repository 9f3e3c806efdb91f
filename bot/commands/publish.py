"""`domainbot merge` (an adapter merged into the model, as a standalone folder) and `domainbot publish`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from bot.errors import DomainbotError

if TYPE_CHECKING:
    from bot.config import Settings


def _adapter_folder(value: str, settings: Settings) -> Path:
    """A folder path, or the name of an adapter in the registry."""
    from training.registry import AdapterRegistry

    return AdapterRegistry.in_data_dir(settings.data_dir).resolve(value)


def merge(
    adapter: Annotated[str, typer.Argument(help="The adapter folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the merged model to.")],
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it already exists.")] = False,
    dtype: Annotated[
        Literal["auto", "float32", "bfloat16", "float16"],
        typer.Option(help="Weight dtype of the merged model; 'auto' keeps the base model's."),
    ] = "auto",
    allow_other_base: Annotated[
        bool,
        typer.Option(
            "--allow-other-base", help="Merge even if the adapter names another base model (shapes must fit)."
        ),
    ] = False,
) -> None:
    """Merge a LoRA adapter into the configured model: a standalone model folder any loader can read."""
    from bot.cli import settings
    from bot.config import EMBEDDED_MODEL
    from bot.model import embedded
    from bot.model.loader import resolve_model
    from training.merge import merge_adapter

    loaded = settings()
    folder = _adapter_folder(adapter, loaded)
    base = resolve_model(loaded)
    hub_id = embedded.HUB_ID if loaded.model == EMBEDDED_MODEL else (base.name if base.name.count("/") == 1 else None)
    merged = merge_adapter(
        base.folder,
        folder,
        out,
        dtype,
        base_name=base.name,
        base_hub_id=hub_id,
        force=force,
        allow_other_base=allow_other_base,
    )
    typer.echo(f"Merged {folder.name} into {base.name}: {merged}")
    typer.echo(f"  chat with it:  DOMAINBOT_MODEL={merged} domainbot chat")
    typer.echo(f"  publish it:    domainbot publish {merged} --repo OWNER/NAME")


def publish(
    folder: Annotated[str, typer.Argument(help="An adapter folder or a merged model folder.")],
    repo: Annotated[str, typer.Option("--repo", help="The Hugging Face repo, OWNER/NAME.")],
    public: Annotated[
        bool, typer.Option("--public", help="Create the repo public (default: private).")
    ] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="The commit message.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Upload an adapter or merged model to a Hugging Face repo (private by default) with HF_TOKEN."""
    from bot.cli import settings
    from training.publish import publish as publish_folder

    loaded = settings()
    if loaded.hf_token is None:
        raise DomainbotError(
            "HF_TOKEN is not set. Set HF_TOKEN in the environment to a Hugging Face token with write access "
            "and run publish again."
        )
    path = Path(folder).expanduser()
    source = path if path.is_dir() else _adapter_folder(folder, loaded)
    result = publish_folder(
        source, repo, loaded.hf_token, private=not public, endpoint=loaded.hf_endpoint, commit_message=message
    )
    if as_json:
        typer.echo(json.dumps(asdict(result)))
        return
    visibility = "visibility unknown" if result.private is None else "private" if result.private else "public"
    typer.echo(f"Published {result.kind} {source.name} to {result.repo_id} ({visibility}), {len(result.files)} files.")
    typer.echo(f"  commit: {result.commit_url}")
