"""The knowledge base: ingest files idempotently into the catalog, the lexical index and Chroma; search them.

Ingest of a batch of documents, in the order that keeps a crash (even kill -9) repairable:
1. journal the batch's sources as pending (committed);
2. embed the chunks and upsert their vectors under deterministic ids (source, content hash, ordinal);
3. in one transaction, replace the sources' chunks in the catalog and the lexical index;
4. delete the vectors of the replaced chunks, then clear the journal.
`recover` (run before every write) finishes any journaled source by making Chroma match the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from filelock import FileLock

from knowledge import catalog
from knowledge.chunking import Chunk, chunk_document
from knowledge.config import KnowledgeConfig
from knowledge.embedder import Embedder, SentenceTransformerEmbedder
from knowledge.fusion import convex_combination, reciprocal_rank_fusion
from knowledge.injection import MAX_INJECTION_SHARE, scan
from knowledge.lexical import LexicalIndex, chunk_context
from knowledge.loaders import (
    Document,
    LoadError,
    content_hash,
    expand_paths,
    parse_document,
    read_bytes,
    source_of,
)
from knowledge.results import FileResult, IngestReport, Location, Passage
from knowledge.store import VectorStore

SearchMode = Literal["hybrid", "dense", "lexical"]
Progress = Callable[[str, int, int], None]
# Each retriever proposes this many candidates per requested passage before fusion.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 40


class KnowledgeError(Exception):
    """A knowledge-base problem the operator can fix; the message says what to do."""


@dataclass
class _Prepared:
    document: Document
    chunks: list[Chunk]
    injections: list[tuple[str, ...]]
    replacing: bool


def chunk_id(source: str, digest: str, ordinal: int) -> str:
    return f"{hashlib.sha1(source.encode()).hexdigest()[:16]}-{digest[:16]}-{ordinal:05d}"


class KnowledgeBase:
    """Documents, their passages and both indexes. Safe to share between threads: one lock serialises the use of
    the catalog connection, the lexical index and Chroma; embedding and parsing run outside it, so a search
    waits for at most one short database step of an ingest, never for the whole ingest."""

    def __init__(self, config: KnowledgeConfig, embedder: Embedder | None = None) -> None:
        self.config = config
        config.store_dir.mkdir(parents=True, exist_ok=True)
        self.db = catalog.open_catalog(config.store_dir / "catalog.sqlite")
        self.lexical = LexicalIndex(self.db, config.lexical_context_weight)
        self.vectors = VectorStore(config.store_dir / "chroma", config.chroma_url, config.chroma_token)
        self._embedder = embedder
        self._lock = FileLock(str(config.store_dir / "write.lock"))
        # FileLock keeps other processes' writes apart; this lock keeps this process's threads apart.
        self._db_lock = threading.RLock()
        self._rebuild_lexical_if_stale()

    def _rebuild_lexical_if_stale(self) -> None:
        """Recompute the lexical terms from the catalog when they were stored by another scheme (an older
        version, another `lexical_context_weight`). Text only, no embedding: seconds for 100,000 chunks."""
        scheme = self.lexical.scheme
        if catalog.get_meta(self.db, "lexical_scheme") == scheme:
            return
        with self._transaction():
            if catalog.get_meta(self.db, "lexical_scheme") != scheme:  # not done by another process meanwhile
                rows = self.db.execute(
                    "SELECT c.rowid, c.text, d.title, c.section FROM chunks c JOIN documents d USING (source)"
                ).fetchall()
                self.lexical.rebuild([(r, text, chunk_context(t, section)) for r, text, t, section in rows])
                catalog.set_meta(self.db, "lexical_scheme", scheme)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction over the catalog and the lexical index: both change, or neither does."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self.lexical.invalidate()  # its in-memory postings may hold what was rolled back
            raise

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            try:
                self._embedder = SentenceTransformerEmbedder(self.config.embedder_path)
            except (FileNotFoundError, OSError) as exc:
                raise KnowledgeError(f"Cannot load the embedder: {exc}") from None
        self._check_embedder(self._embedder)
        return self._embedder

    def _check_embedder(self, embedder: Embedder) -> None:
        signature = f"{embedder.name}/{embedder.dimension}"
        with self._db_lock:
            recorded = catalog.get_meta(self.db, "embedder")
            if recorded is None:
                catalog.set_meta(self.db, "embedder", signature)
        if recorded is not None and recorded != signature:
            raise KnowledgeError(
                f"The knowledge base in {self.config.store_dir} was built with embedder {recorded}, "
                f"but {signature} is configured. Use the same embedder, or remove that folder and add the "
                "documents again."
            )

    def close(self) -> None:
        with self._db_lock:
            self.db.close()

    # --- writing -------------------------------------------------------------------------------------------

    def add(self, paths: Iterable[str | Path], progress: Progress | None = None) -> IngestReport:
        """Ingest files, folders and globs: each is added, unchanged, replaced or failed (with a reason)."""
        files, misses = expand_paths(paths)
        max_bytes = int(self.config.max_document_mb * 1_000_000)

        def prepared() -> Iterator[tuple[FileResult | None, _Prepared | None]]:
            for done, path in enumerate(files, start=1):
                yield self._prepare(path, max_bytes)
                if progress is not None:
                    progress(str(path), done, len(files))

        report = self._ingest(prepared())
        report.results[:0] = [FileResult(name, "failed", reason=reason) for name, reason in misses]
        return report

    def add_documents(self, documents: Iterable[Document]) -> IngestReport:
        """Ingest documents built in memory (no file behind them), with the same idempotence as `add`."""
        return self._ingest(self._prepare_document(doc) for doc in documents)

    def _ingest(self, items: Iterable[tuple[FileResult | None, _Prepared | None]]) -> IngestReport:
        """Write prepared documents in batches of about `embed_batch_chunks` chunks, under the write lock."""
        report = IngestReport()
        with self._lock:
            self.recover()
            batch: list[_Prepared] = []
            batch_chunks = 0
            for result, prepared in items:
                if result is not None:
                    report.results.append(result)
                if prepared is not None:
                    batch.append(prepared)
                    batch_chunks += len(prepared.chunks)
                if batch_chunks >= self.config.embed_batch_chunks:
                    report.results.extend(self._write(batch))
                    batch, batch_chunks = [], 0
            if batch:
                report.results.extend(self._write(batch))
        return report

    def _prepare(self, path: Path, max_bytes: int) -> tuple[FileResult | None, _Prepared | None]:
        name = str(path)
        try:
            data = read_bytes(path, max_bytes)
            digest = content_hash(data)
            with self._db_lock:
                known = catalog.document(self.db, source_of(path))
            if known is not None and known.content_hash == digest:
                return FileResult(name, "unchanged", known.chunks), None
            document = parse_document(path, data, digest)
        except LoadError as exc:
            return FileResult(name, "failed", reason=str(exc)), None
        except Exception as exc:  # a parser library failing on a malformed file must not stop the batch
            reason = f"could not be parsed ({type(exc).__name__}: {exc})"
            return FileResult(name, "failed", reason=reason), None
        return self._prepare_document(document, name)

    def _prepare_document(
        self, document: Document, name: str | None = None
    ) -> tuple[FileResult | None, _Prepared | None]:
        name = name or document.source
        with self._db_lock:
            known = catalog.document(self.db, document.source)
        if known is not None and known.content_hash == document.content_hash:
            return FileResult(name, "unchanged", known.chunks), None
        whole = scan(document.text)
        if whole.share >= MAX_INJECTION_SHARE:
            return FileResult(
                name,
                "failed",
                reason=f"mostly instructions to the model ({whole.share:.0%} of its text matches "
                f"{', '.join(whole.rules)}); documents are data, so it was not added",
            ), None
        chunks = chunk_document(document, self.config.chunk_tokens, self.config.chunk_overlap)
        injections = [scan(chunk.text).rules for chunk in chunks]
        return None, _Prepared(document, chunks, injections, replacing=known is not None)

    def _write(self, batch: list[_Prepared]) -> list[FileResult]:
        sources = [p.document.source for p in batch]
        with self._db_lock:
            self.db.executemany("INSERT OR IGNORE INTO pending VALUES (?)", [(s,) for s in sources])

        ids = [
            chunk_id(p.document.source, p.document.content_hash, c.ordinal) for p in batch for c in p.chunks
        ]
        texts = [c.text for p in batch for c in p.chunks]
        owners = [p.document.source for p in batch for _ in p.chunks]
        vectors = self.embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
        with self._db_lock:
            self.vectors.upsert(ids, vectors, owners)
            stale = self._replace_chunks(batch, ids, texts)
            self.vectors.delete(stale)
            self.db.executemany("DELETE FROM pending WHERE source = ?", [(s,) for s in sources])
        return [
            FileResult(p.document.source, "replaced" if p.replacing else "added", len(p.chunks))
            for p in batch
        ]

    def _replace_chunks(self, batch: list[_Prepared], ids: list[str], texts: list[str]) -> list[str]:
        """In one transaction, the batch's chunks replace its sources' old ones in the catalog and the lexical
        index; returns the ids of the old chunks whose vectors are now stale."""
        stale: list[str] = []
        with self._transaction():
            new_rowids: list[int] = []
            contexts: list[str] = []
            cursor = 0
            for prepared in batch:
                doc = prepared.document
                old = catalog.chunk_keys(self.db, doc.source)
                keep = set(ids[cursor : cursor + len(prepared.chunks)])
                stale.extend(i for _, i in old if i not in keep)
                self.lexical.remove([r for r, _ in old])
                self.db.execute("DELETE FROM chunks WHERE source = ?", (doc.source,))
                self.db.execute(
                    "INSERT OR REPLACE INTO documents(source, content_hash, title, kind, chunks, characters) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (doc.source, doc.content_hash, doc.title, doc.kind, len(prepared.chunks), len(doc.text)),
                )
                for chunk, rules in zip(prepared.chunks, prepared.injections, strict=True):
                    row = self.db.execute(
                        'INSERT INTO chunks(id, source, ordinal, section, page, start, "end", text, '
                        "injection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ids[cursor],
                            doc.source,
                            chunk.ordinal,
                            chunk.section,
                            chunk.page,
                            chunk.start,
                            chunk.end,
                            chunk.text,
                            ",".join(rules),
                        ),
                    )
                    new_rowids.append(int(row.lastrowid or 0))
                    contexts.append(chunk_context(doc.title, chunk.section))
                    cursor += 1
            self.lexical.add(new_rowids, texts, contexts)
        return stale

    def remove(self, source: str) -> int:
        """Remove a source (its exact name, or a path to it) from both indexes; returns its chunk count."""
        with self._lock, self._db_lock:
            finished = self.recover()
            known = catalog.document(self.db, source) or catalog.document(self.db, source_of(Path(source)))
            if known is None and {source, source_of(Path(source))} & set(finished):
                return 0  # an interrupted removal of this source, completed just now
            if known is None:
                raise KnowledgeError(
                    f"No source named {source!r} in the knowledge base. "
                    "Run `domainbot kb list` to see the sources."
                )
            self.db.execute("INSERT OR IGNORE INTO pending VALUES (?)", (known.source,))
            with self._transaction():
                self.lexical.remove([r for r, _ in catalog.chunk_keys(self.db, known.source)])
                self.db.execute("DELETE FROM chunks WHERE source = ?", (known.source,))
                self.db.execute("DELETE FROM documents WHERE source = ?", (known.source,))
            self.recover()
            return known.chunks

    def recover(self) -> list[str]:
        """Finish interrupted writes: Chroma gets exactly the catalog's chunks of each journaled source.

        Returns the sources that were finished."""
        with self._db_lock:
            pending = [str(s) for (s,) in self.db.execute("SELECT source FROM pending")]
            for source in pending:
                wanted = {i for _, i in catalog.chunk_keys(self.db, source)}
                self.vectors.delete([i for i in self.vectors.ids_of_source(source) if i not in wanted])
                self.db.execute("DELETE FROM pending WHERE source = ?", (source,))
            if pending:
                self.lexical.invalidate()
            return pending

    # --- reading -------------------------------------------------------------------------------------------

    def sources(self) -> list[catalog.DocumentRecord]:
        with self._db_lock:
            return catalog.documents(self.db)

    def chunk_count(self) -> int:
        """Passages in the catalog: one cheap query, for health checks."""
        with self._db_lock:
            (chunks,) = self.db.execute("SELECT count(*) FROM chunks").fetchone()
        return int(chunks)

    def stats(self) -> dict[str, object]:
        with self._db_lock:
            (chunks,) = self.db.execute("SELECT count(*) FROM chunks").fetchone()
            (terms,) = self.db.execute("SELECT count(*) FROM terms").fetchone()
            (flagged,) = self.db.execute("SELECT count(*) FROM chunks WHERE injection != ''").fetchone()
            vectors = self.vectors.count()
            embedder = catalog.get_meta(self.db, "embedder")
        size = sum(f.stat().st_size for f in self.config.store_dir.rglob("*") if f.is_file())
        return {
            "documents": len(self.sources()),
            "chunks": int(chunks),
            "vectors": vectors,
            "lexical_terms": int(terms),
            "injection_flagged_chunks": int(flagged),
            "embedder": embedder or "(none yet)",
            "store": str(self.config.store_dir),
            "vectors_at": self.vectors.where,
            "bytes_on_disk": size,
        }

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid") -> list[Passage]:
        """The k passages that best match the query, best first."""
        if k < 1:
            raise KnowledgeError(f"Expected k of at least 1, got {k}.")
        ranked = self.rank(query, max(k * CANDIDATES_PER_RESULT, MIN_CANDIDATES), mode)[:k]
        with self._db_lock:
            # A chunk removed since it was ranked is simply missing here.
            records = catalog.chunks_by_rowid(self.db, [r for r, _ in ranked])
        return [_passage(records[rowid], score) for rowid, score in ranked if rowid in records]

    def passages(self, ids: Iterable[str]) -> dict[str, Passage]:
        """The passages with these ids that the knowledge base still holds, by id (score 0)."""
        with self._db_lock:
            rowids = catalog.rowids_of(self.db, list(ids))
            records = catalog.chunks_by_rowid(self.db, list(rowids.values()))
        return {record.id: _passage(record, 0.0) for record in records.values()}

    def rank(
        self, query: str, candidates: int, mode: SearchMode = "hybrid", query_vector: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(chunk rowid, score) best first, from one retriever or both fused; pass `query_vector` if known."""
        if not query.strip():
            raise KnowledgeError("Expected a non-empty query.")
        weight = 1.0 if mode == "dense" else self.config.hybrid_weight
        if mode != "lexical" and weight > 0.0 and query_vector is None:
            query_vector = self.embedder.embed([query])[0]  # outside the lock: the slow part of a search
        with self._db_lock:
            lexical = [] if mode == "dense" else self.lexical.search(query, candidates)
            if mode == "lexical":
                return lexical
            dense: list[tuple[int, float]] = []
            if weight > 0.0 and query_vector is not None:
                hits = self.vectors.query(query_vector, candidates)
                rowids = catalog.rowids_of(self.db, [i for i, _ in hits])
                dense = [(rowids[i], s) for i, s in hits if i in rowids]
        if mode == "dense":
            return dense
        if self.config.fusion == "rrf":
            return reciprocal_rank_fusion(
                [r for r, _ in dense], [r for r, _ in lexical], weight, self.config.rrf_k
            )
        return convex_combination(dense, lexical, weight)


def _passage(record: catalog.ChunkRecord, score: float) -> Passage:
    location = Location(record.start, record.end, record.section, record.page)
    rules = tuple(r for r in record.injection.split(",") if r)
    return Passage(record.id, record.source, record.title, location, record.text, score, rules)
