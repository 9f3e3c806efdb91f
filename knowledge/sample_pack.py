"""The sample knowledge pack: a short guide to domainbot itself, loaded into an empty knowledge base once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from knowledge import catalog
from knowledge.base import KnowledgeBase
from knowledge.loaders import content_hash, parse_document
from knowledge.results import IngestReport

SAMPLE_PACK_MARK = "sample_pack_loaded"
SAMPLE_PACK_SOURCE = "sample-pack"


def sample_pack_dir() -> Path:
    return Path(__file__).parent / "sample_pack"


def ensure_sample_pack(kb: KnowledgeBase) -> IngestReport | None:
    """Load the sample pack if this knowledge base has never had it and holds no documents.

    Recorded in the catalog, so an operator who removes the pack (or starts with their own documents)
    never gets it back. Returns the ingest report, or None when nothing was loaded.
    """
    if catalog.get_meta(kb.db, SAMPLE_PACK_MARK) is not None:
        return None
    if kb.sources():
        catalog.set_meta(kb.db, SAMPLE_PACK_MARK, "skipped: the knowledge base already had documents")
        return None
    # Named by the pack, not by where this package happens to be installed: sources show up in citations.
    documents = []
    for path in sorted(sample_pack_dir().glob("*.md")):
        data = path.read_bytes()
        document = parse_document(path, data, content_hash(data))
        documents.append(dataclasses.replace(document, source=f"{SAMPLE_PACK_SOURCE}/{path.name}"))
    report = kb.add_documents(documents)
    catalog.set_meta(kb.db, SAMPLE_PACK_MARK, "loaded")
    return report
