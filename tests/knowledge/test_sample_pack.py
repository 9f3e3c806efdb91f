from __future__ import annotations

from pathlib import Path

from knowledge import KnowledgeBase, ensure_sample_pack, sample_pack_dir


def test_sample_pack_loads_once_into_an_empty_knowledge_base(kb: KnowledgeBase) -> None:
    report = ensure_sample_pack(kb)
    assert report is not None and report.ok
    assert len(kb.sources()) == len(list(sample_pack_dir().glob("*.md"))) >= 4
    assert ensure_sample_pack(kb) is None


def test_removed_sample_pack_does_not_come_back(kb: KnowledgeBase) -> None:
    ensure_sample_pack(kb)
    for record in kb.sources():
        kb.remove(record.source)
    assert ensure_sample_pack(kb) is None
    assert kb.sources() == []


def test_sample_pack_is_skipped_when_the_operator_has_documents(kb: KnowledgeBase, tmp_path: Path) -> None:
    own = tmp_path / "own.md"
    own.write_text("# Our product\n\nIt ships on Mondays.\n", encoding="utf-8")
    kb.add([own])
    assert ensure_sample_pack(kb) is None
    assert [Path(d.source).name for d in kb.sources()] == ["own.md"]


def test_sample_pack_answers_questions_about_domainbot(kb: KnowledgeBase) -> None:
    ensure_sample_pack(kb)
    best = kb.search("How do I delete a document from the knowledge base?", k=3)
    assert any("kb remove" in p.text for p in best)
