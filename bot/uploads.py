"""Documents sent to a running bot (over Telegram or HTTP): a safe name, a place on disk, an ingest that
loses nothing.

An upload is kept under its name in the front end's uploads folder, and the knowledge base names it by that
path, so a second upload of the same name replaces the first. If the new version cannot be added, the file
and the passages of the previous version stay as they were.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from knowledge import FileResult, KnowledgeBase, KnowledgeError

MAX_NAME_CHARS = 100


def safe_file_name(name: str | None) -> str:
    """A file name that is safe to store: no folders, no hidden files, no odd characters, not too long."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = re.sub(r"[^\w.\- ()]", "_", base).strip(" .")
    stem, suffix = os.path.splitext(base)
    stem = stem[: MAX_NAME_CHARS - len(suffix)] or "document"
    return stem + suffix.lower()


def incoming_path(uploads_dir: Path, name: str) -> Path:
    """Where an upload lands before it is ingested (a unique name, on the same disk as the uploads)."""
    folder = uploads_dir / ".incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{time.time_ns()}-{name}"


def ingest_upload(kb: KnowledgeBase, downloaded: Path, target: Path) -> FileResult:
    """Move `downloaded` to `target` and add it; a new version replaces the old, a failure restores the old.
    The result is named by the file's name, not its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = target.with_name(target.name + ".previous")
    had_previous = target.exists()
    if had_previous:
        os.replace(target, previous)
    os.replace(downloaded, target)
    try:
        report = kb.add([target])
    except KnowledgeError as exc:  # e.g. an embedder other than the one the knowledge base was built with
        _restore(target, previous, had_previous)
        return FileResult(target.name, "failed", reason=str(exc))
    except BaseException:
        _restore(target, previous, had_previous)
        raise
    result = report.results[0]
    if result.outcome == "failed":
        _restore(target, previous, had_previous)
        reason = result.reason.replace(str(target), target.name)
        return FileResult(target.name, "failed", reason=reason)
    if had_previous:
        previous.unlink(missing_ok=True)
    return FileResult(target.name, result.outcome, result.chunks)


def _restore(target: Path, previous: Path, had_previous: bool) -> None:
    target.unlink(missing_ok=True)
    if had_previous:
        os.replace(previous, target)
