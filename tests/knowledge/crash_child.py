"""Run an ingest (or a removal) that kills its own process with SIGKILL at a chosen point.

Used by test_crash.py: `python -m tests.knowledge.crash_child DATA_DIR DOCS PHASE`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig
from knowledge.lexical import LexicalIndex
from knowledge.store import VectorStore

# Die on the second occurrence, so that one batch has been fully written before the crash.
DIE_ON_CALL = 2


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_on_call(function: Callable[..., Any], before: bool, marker: Path | None = None) -> Callable[..., Any]:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == DIE_ON_CALL and before:
            if marker is not None:  # let the parent send the kill -9
                marker.write_text("ready")
                time.sleep(60)
            die()
        result = function(*args, **kwargs)
        if calls == DIE_ON_CALL:
            die()
        return result

    return wrapper


def main(data_dir: str, docs: str, phase: str) -> None:
    config = KnowledgeConfig(data_dir=Path(data_dir), chunk_tokens=24, chunk_overlap=4, embed_batch_chunks=6)
    embedder = HashEmbedder()
    if phase == "embed":
        embedder.embed = die_on_call(embedder.embed, before=True)  # type: ignore[method-assign]
    elif phase == "parent-kills":
        embedder.embed = die_on_call(  # type: ignore[method-assign]
            embedder.embed, before=True, marker=Path(data_dir) / "ready"
        )
    elif phase == "after-upsert":
        VectorStore.upsert = die_on_call(VectorStore.upsert, before=False)  # type: ignore[method-assign]
    elif phase == "inside-transaction":
        LexicalIndex.add = die_on_call(LexicalIndex.add, before=False)  # type: ignore[method-assign]
    elif phase in ("before-stale-delete", "remove"):
        VectorStore.delete = die_on_call(VectorStore.delete, before=True)  # type: ignore[method-assign]
    kb = KnowledgeBase(config, embedder)
    if phase == "remove":
        for source in sorted(d.source for d in kb.sources()):
            kb.remove(source)
    else:
        kb.add([docs])
    raise SystemExit("the process was meant to be killed before finishing")


if __name__ == "__main__":
    main(*sys.argv[1:4])
