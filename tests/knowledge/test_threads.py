"""One knowledge base shared by threads: searches run while another thread ingests and removes documents."""

from __future__ import annotations

import threading
from pathlib import Path

from knowledge import KnowledgeBase
from tests.knowledge.conftest import CONSISTENT, consistency

ANCHOR = "The descaling cycle of the espresso machine takes twelve minutes."
SEARCHERS = 4
SEARCHES_EACH = 25
NEW_DOCUMENTS = 12


def test_searches_from_several_threads_while_another_ingests(kb: KnowledgeBase, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "anchor.md").write_text(f"# Descaling\n\n{ANCHOR}\n", encoding="utf-8")
    kb.add([docs / "anchor.md"])
    errors: list[BaseException] = []
    found: list[bool] = []
    start = threading.Barrier(SEARCHERS + 1)

    def search() -> None:
        start.wait()
        try:
            for _ in range(SEARCHES_EACH):
                passages = kb.search("how long does descaling take", 3)
                found.append(any(ANCHOR in p.text for p in passages))
        except BaseException as exc:  # the test reports every thread's failure, not just the first
            errors.append(exc)

    def ingest() -> None:
        start.wait()
        try:
            for i in range(NEW_DOCUMENTS):
                path = docs / f"grinder-{i}.md"
                path.write_text(f"# Grinder {i}\n\nGrinder model {i} has {i + 5} burr settings.\n", encoding="utf-8")
                kb.add([path])
                if i % 3 == 2:
                    kb.remove(str(docs / f"grinder-{i - 1}.md"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(SEARCHERS)]
    threads.append(threading.Thread(target=ingest))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(found) == SEARCHERS * SEARCHES_EACH and all(found)
    # The document left standing by the last writes is searchable from any thread, and the indexes agree.
    assert len(kb.sources()) == 1 + NEW_DOCUMENTS - NEW_DOCUMENTS // 3
    assert consistency(kb) == CONSISTENT
    last = kb.search("grinder model 11 burr settings", 1, mode="lexical")
    assert last and last[0].source.endswith("grinder-11.md")
