"""Terminal chat: a REPL on a terminal, one answer per input line when piped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TextIO

from bot.errors import DomainbotError
from bot.model.backend import Backend

HELP = """Commands:
  /reset   forget the conversation so far
  /help    show this help
  /quit    leave (also /exit, or Ctrl-D)
Anything else is a question for the bot. Ctrl-C stops an answer that is being written."""


class CitationLike(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def location(self) -> str: ...


class ReplyLike(Protocol):
    """What the terminal shows of an answer: the checked text, the text as generated, the sources."""

    @property
    def text(self) -> str: ...
    @property
    def raw_text(self) -> str: ...
    @property
    def citations(self) -> Sequence[CitationLike]: ...
    def to_json(self) -> dict[str, Any]: ...


class Session(Protocol):
    """A conversation the terminal talks to: the full pipeline, or the model alone (`--raw`)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def load_timings(self) -> dict[str, float]: ...
    def ask(self, question: str, on_piece: Callable[[str], None] | None = None) -> ReplyLike: ...
    def reset(self) -> None: ...


def show_reply(reply: ReplyLike, stdout: TextIO, streamed: str | None) -> None:
    """After streaming (`streamed` is the text shown so far), the checked answer if it differs; without
    streaming, the answer. Then sources."""
    if streamed is None:
        stdout.write(reply.text)
    elif not streamed.strip():
        stdout.write(reply.text)  # the model wrote nothing: the answer comes from the passages, or says so
    elif reply.text.strip() != streamed.strip():
        stdout.write(f"\n\n(checked) {reply.text}")
    for citation in reply.citations:
        stdout.write(f"\n  [{citation.number}] {citation.source} · {citation.location}")
    stdout.write("\n")
    stdout.flush()


def run_chat(session: Session, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Talk until /quit or end of input. Returns the number of questions answered."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty() and stdout.isatty()
    shown_adapter = session.backend.adapter
    if interactive:
        _enable_line_editing()
        backend = session.backend
        adapter = f" + adapter {backend.adapter}" if backend.adapter else ""
        stdout.write(f"domainbot · {backend.model_name}{adapter} · /help for commands\n")
    answered = 0
    while True:
        line = _read_line(stdin, stdout, interactive)
        if line is None:
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not _command(text, session, stdout):
                break
            continue
        if interactive:
            # A newly activated adapter is loaded in the background; say so once it answers.
            if session.backend.adapter != shown_adapter:
                shown_adapter = session.backend.adapter
                stdout.write(f"(switched to {_adapter_label(shown_adapter)})\n")
            stdout.write("bot › ")
            stdout.flush()
        try:
            # On a terminal the answer streams as it is written; piped, only the checked answer is printed.
            shown: list[str] = []
            reply = session.ask(text, on_piece=partial(_stream, stdout, shown) if interactive else None)
            show_reply(reply, stdout, streamed="".join(shown) if interactive else None)
        except DomainbotError as exc:
            stdout.write(f"error: {exc}\n")
        except KeyboardInterrupt:
            stdout.write(" [stopped]\n")
        stdout.flush()
        answered += 1
    return answered


def _stream(stdout: TextIO, shown: list[str], piece: str) -> None:
    shown.append(piece)
    _write(stdout, piece)


def _command(text: str, session: Session, stdout: TextIO) -> bool:
    """Run a slash command; False means leave the chat."""
    name = text.split()[0].lower()
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        session.reset()
        stdout.write("Conversation cleared.\n")
    elif name == "/help":
        stdout.write(HELP + "\n")
    else:
        stdout.write(f"Unknown command {name}. Type /help for the list.\n")
    stdout.flush()
    return True


def _adapter_label(adapter: str | None) -> str:
    return f"adapter {adapter}" if adapter else "the base model, no adapter"


def _read_line(stdin: TextIO, stdout: TextIO, interactive: bool) -> str | None:
    if not interactive:
        line = stdin.readline()
        return line if line else None
    try:
        return input("you › ")
    except EOFError:
        stdout.write("\n")
        return None
    except KeyboardInterrupt:
        stdout.write("\n")
        return None


def _write(stdout: TextIO, piece: str) -> None:
    stdout.write(piece)
    stdout.flush()


def _enable_line_editing() -> None:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  # importing it gives input() history and editing
