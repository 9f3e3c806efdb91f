"""Terminal chat: a REPL on a terminal, one answer per input line when piped."""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

from bot.chat import ChatSession
from bot.errors import DomainbotError

HELP = """Commands:
  /reset   forget the conversation so far
  /help    show this help
  /quit    leave (also /exit, or Ctrl-D)
Anything else is a question for the bot. Ctrl-C stops an answer that is being written."""


def run_chat(session: ChatSession, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Talk until /quit or end of input. Returns the number of questions answered."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty() and stdout.isatty()
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
            stdout.write("bot › ")
            stdout.flush()
        try:
            session.ask(text, on_piece=lambda piece: _write(stdout, piece))
        except DomainbotError as exc:
            stdout.write(f"error: {exc}")
        except KeyboardInterrupt:
            stdout.write(" [stopped]")
        stdout.write("\n")
        stdout.flush()
        answered += 1
    return answered


def _command(text: str, session: ChatSession, stdout: TextIO) -> bool:
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
