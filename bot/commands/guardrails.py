"""`domainbot guard check`, `domainbot guard train-head` and `domainbot eval guardrails`: the guardrails from
the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.errors import DomainbotError

if TYPE_CHECKING:
    from guardrails import Guardrails, Policy
    from guardrails.evaluation import TimedEmbedder
    from knowledge.embedder import SentenceTransformerEmbedder

guard_app = typer.Typer(help="Check texts against the guardrails.", no_args_is_help=True)

RulesOnly = Annotated[
    bool, typer.Option("--rules-only", help="Skip the embedding classifier (no model is loaded).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _load_guardrails(rules_only: bool) -> tuple[Guardrails, TimedEmbedder | None]:
    # Imported here, not at the top: every `domainbot` command imports this module to register it.
    from bot.cli import settings
    from guardrails import Guardrails, PolicyError
    from guardrails.evaluation import TimedEmbedder

    config = settings()
    timer = None
    if not rules_only:
        import torch

        # One short text per call: with more threads the thread hand-off costs more than it saves.
        torch.set_num_threads(1)
        timer = TimedEmbedder(_embedder(" Or run with --rules-only."))
    try:
        guard = Guardrails.load(config.guardrails_policy, timer, config.topical_mode)
    except PolicyError as exc:
        raise DomainbotError(
            f"Guardrail policy rejected: {exc}. Fix the file, or unset DOMAINBOT_GUARDRAILS_POLICY to use "
            "the shipped policy."
        ) from None
    return guard, timer


def _embedder(hint: str = "") -> SentenceTransformerEmbedder:
    """The embedder the bot uses (DOMAINBOT_EMBEDDER_PATH, or the shipped one)."""
    from bot.cli import settings
    from knowledge.embedder import SentenceTransformerEmbedder

    try:
        return SentenceTransformerEmbedder(settings().embedder_path)
    except FileNotFoundError as exc:
        raise DomainbotError(f"{exc}{hint}") from None


@guard_app.command("check")
def guard_check(
    text: Annotated[str, typer.Argument(help="The message to check; '-' reads it from standard input.")],
    as_json: AsJson = False,
    rules_only: RulesOnly = False,
) -> None:
    """Run the input rail on TEXT and print the verdict."""
    message: str | bytes = sys.stdin.buffer.read() if text == "-" else text
    guard, _ = _load_guardrails(rules_only)
    verdict = guard.check_input(message)
    if as_json:
        typer.echo(json.dumps(verdict.to_json_dict(), ensure_ascii=False, indent=2))
        return
    status = {"allowed": "[green]allowed[/]", "masked": "[yellow]masked[/]", "blocked": "[red]blocked[/]"}
    console = Console()
    console.print(f"{status[verdict.action]}  rule={verdict.rule or '-'}  category={verdict.category or '-'}")
    if verdict.message:
        console.print(verdict.message, highlight=False)
    if verdict.action == "masked":
        console.print(verdict.masked_text, highlight=False)


@guard_app.command("train-head")
def guard_train_head(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the encoder head; default: the file harmful.head names."),
    ] = None,
    own_dir: Annotated[
        Path | None,
        typer.Option("--own-dir", help="Folder of own sets whose dev splits train it; default: shipped."),
    ] = None,
    folds: Annotated[
        int,
        typer.Option(
            "--folds", min=0, help="Cross-validate the encoder head on this many folds first (0: skip)."
        ),
    ] = 0,
    which: Annotated[
        str,
        typer.Option("--which", help="Which heads to build: all (those the policy names), encoder or ngrams."),
    ] = "all",
) -> None:
    """Build the classifier heads on the policy's exemplars and the own sets' dev splits, and write them where
    the policy reads them: the encoder head (LoRA on the embedder's encoder, a few minutes) and the n-gram
    head for the languages the embedder cannot read (seconds)."""
    from bot.cli import settings
    from guardrails import DEFAULT_POLICY_PATH, load_policy
    from guardrails.evaluation import OWN_SETS_DIR

    if which not in ("all", "encoder", "ngrams"):
        raise DomainbotError(f"--which {which!r}: expected all, encoder or ngrams")
    policy_path = settings().guardrails_policy or DEFAULT_POLICY_PATH
    try:
        policy = load_policy(policy_path, with_head=False)
    except (FileNotFoundError, ValueError) as exc:  # PolicyError is a ValueError
        raise DomainbotError(str(exc)) from None
    own = own_dir or OWN_SETS_DIR
    encoder = which in ("all", "encoder") and (policy.harmful.head is not None or out is not None)
    ngrams = which in ("all", "ngrams") and policy.harmful.ngram_head is not None
    if which == "encoder" and not encoder:
        raise DomainbotError(
            f"{policy_path} has no harmful.head section to name the head's file; add one, or pass --out."
        )
    if which == "ngrams" and not ngrams:
        raise DomainbotError(f"{policy_path} has no harmful.ngram_head section to name the head's file; add one.")
    if not encoder and not ngrams:
        raise DomainbotError(f"{policy_path} names no head to build (harmful.head, harmful.ngram_head).")
    if encoder:
        _train_encoder_head(policy, policy_path, own, out, folds)
    if ngrams:
        _train_ngram_head(policy, policy_path, own)


def _train_encoder_head(policy: Policy, policy_path: Path, own: Path, out: Path | None, folds: int) -> None:
    from guardrails.head import exemplars_digest
    from guardrails.head_training import cross_validate, train_head, training_rows

    try:
        rows = training_rows(policy, own)
    except (FileNotFoundError, ValueError) as exc:
        raise DomainbotError(str(exc)) from None
    if out is None:
        assert policy.harmful.head is not None  # the caller checked
        out = policy_path.parent / policy.harmful.head.file
    embedder = _embedder()
    refused = sum(rows.labels)
    passing = len(rows.texts) - refused
    typer.echo(f"encoder head: {len(rows.texts)} training texts, {refused} to refuse, {passing} to pass")
    if folds:
        bar = policy.harmful.head.alone if policy.harmful.head else 0.5
        try:
            found = cross_validate(rows, embedder.path, folds, bar)
        except ValueError as exc:
            raise DomainbotError(str(exc)) from None
        typer.echo(
            f"{folds}-fold cross-validation, the head alone at {bar:.2f}: refuses {found.refused:.1%} of the "
            f"texts to refuse, passes {found.passed:.1%} of the texts to pass"
        )
    try:
        head = train_head(rows, embedder.path, embedder.name, exemplars_digest(policy.exemplars, policy.benign))
    except ValueError as exc:
        raise DomainbotError(str(exc)) from None
    head.save(out)
    typer.echo(f"wrote {out} (for the embedder {embedder.name})")


def _train_ngram_head(policy: Policy, policy_path: Path, own: Path) -> None:
    from guardrails.head_training import labelled_rows, train_ngram_head
    from guardrails.ngram_head import ALLOW

    settings = policy.harmful.ngram_head
    assert settings is not None  # the caller checked
    try:
        rows = labelled_rows(policy, settings.languages, own)
        head = train_ngram_head(rows, settings.languages)
    except (FileNotFoundError, ValueError) as exc:
        raise DomainbotError(f"n-gram head ({', '.join(settings.languages)}): {exc}") from None
    passing = sum(label == ALLOW for _, label in rows)
    typer.echo(
        f"n-gram head ({', '.join(settings.languages)}): {len(rows)} training texts, {len(rows) - passing} to "
        f"refuse, {passing} to pass; {len(head.grams)} n-grams"
    )
    out = policy_path.parent / settings.file
    head.save(out)
    typer.echo(f"wrote {out}")


def eval_guardrails(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="Folder with advbench_harmful_behaviors.csv and xstest_prompts.csv."),
    ] = Path("../shared/data"),
    own: Annotated[
        str,
        typer.Option(
            "--own",
            help="Split of the project's own sets to add: heldout (measured only), dev (tuned on), all or none.",
        ),
    ] = "heldout",
    own_dir: Annotated[
        Path | None,
        typer.Option("--own-dir", help="Folder of own sets (*.yaml with dev/heldout splits); default: shipped."),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public/--no-public", help="Include AdvBench and XSTest from --data-dir.")
    ] = True,
    as_json: AsJson = False,
    rules_only: RulesOnly = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 when a target is missed.")
    ] = False,
) -> None:
    """Block rate on AdvBench and XSTest-unsafe, allow rate on XSTest-safe, the own sets, and latency."""
    from guardrails.evaluation import OWN_SETS_DIR, EvalSet, evaluate, load_eval_sets, load_own_sets

    sets: list[EvalSet] = []
    try:
        if public:
            sets += load_eval_sets(data_dir)
        if own != "none":
            sets += load_own_sets(own, own_dir or OWN_SETS_DIR)
    except (FileNotFoundError, ValueError) as exc:  # PolicyError is a ValueError
        raise DomainbotError(str(exc)) from None
    if not sets:
        raise DomainbotError("Nothing to evaluate: --no-public with --own none, or an empty --own-dir.")
    guard, timer = _load_guardrails(rules_only)
    report = evaluate(guard, sets, timer)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        table = Table("set", "rate", "target", "passed", "failures")
        for row in report["sets"]:  # type: ignore[attr-defined]
            table.add_row(
                row["name"],
                f"{row['rate']:.1%}",
                "-" if row["target"] is None else f"{row['target']:.0%}",
                {True: "yes", False: "NO", None: "-"}[row["passed"]],
                str(len(row["failures"])),
            )
        console = Console()
        console.print(table)
        console.print(f"latency (ms): {report['latency_ms']}; {report['seconds']} s in all")
    if strict and not report["passed"]:
        raise typer.Exit(1)
