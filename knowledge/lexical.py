"""Lexical index: BM25 over terms that work without a morphological analyser, persisted in SQLite.

Korean words glue particles and endings to their stems (서울에서, 서울의), so whole-word matching misses.
Two fields carry the text instead:
- `c:` character bigrams of the text with whitespace removed, for every bigram that holds a non-ASCII letter
  (Hangul, CJK and other scripts) or a digit: they match stems whatever is glued to them, across spacing
  variants, and numbers inside dates and counts (1989년);
- `w:` words: Latin words lowercased, and non-Latin words with a common Korean particle stripped.
Each field has its own length normalisation; a term's BM25 weight is multiplied by its field's weight.

A chunk is indexed with its context: the document's title and the chunk's section heading count among its
terms, `context_weight` times over. A passage cut from the middle of a document rarely names what the
document is about ("he was born in 1953" under the title "Kim Yi-su"), and questions do.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

WORD = re.compile(r"\w+")
WHITESPACE = re.compile(r"\s+")
FIELD_WEIGHTS = {"c": 1.0, "w": 0.7}
BM25_K1 = 0.9
BM25_B = 0.6
# Longest first, so 에서는 goes before 는; a particle is stripped only when a stem of 2+ characters remains.
# fmt: off
KOREAN_PARTICLES = tuple(sorted(
    (
        "은", "는", "이", "가", "을", "를", "의", "에", "에서",
        "에게", "께서", "으로", "로", "와", "과", "도", "만", "까지",
        "부터", "에는", "에서는", "으로는", "로는", "에도", "이나", "나", "라고",
        "이라고", "처럼", "보다", "한테", "이다", "였다", "이었다", "하였다", "했다",
        "하는", "했던", "된", "되었다", "하고", "이고",
    ),
    key=len,
    reverse=True,
))
# fmt: on


def strip_particle(word: str) -> str:
    for particle in KOREAN_PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= 2:
            return word[: -len(particle)]
    return word


def lexical_terms(text: str) -> Counter[str]:
    """Term counts of a text, with the field as a prefix (`c:` bigrams, `w:` words)."""
    text = unicodedata.normalize("NFKC", text).lower()
    terms: Counter[str] = Counter()
    for word in WORD.findall(text):
        terms["w:" + (word if word.isascii() else strip_particle(word))] += 1
    dense = WHITESPACE.sub("", text)
    for i in range(len(dense) - 1):
        pair = dense[i : i + 2]
        if any(c.isdigit() or (c.isalpha() and not c.isascii()) for c in pair):
            terms["c:" + pair] += 1
    return terms


def chunk_terms(text: str, context: str, context_weight: int) -> Counter[str]:
    """Terms of a chunk: its own text's, plus its context's (title, section) counted `context_weight` times."""
    terms = lexical_terms(text)
    if context_weight > 0:
        for term, count in lexical_terms(context).items():
            terms[term] += count * context_weight
    return terms


def chunk_context(title: str | None, section: str | None) -> str:
    """The title and the section heading, once each (a section often repeats the title)."""
    return "\n".join(dict.fromkeys(part for part in (title, section) if part))


@dataclass
class _Postings:
    """Term-major postings (CSC-like): documents of term t are `rows[starts[t]:starts[t + 1]]`."""

    starts: np.ndarray  # (V + 1,) int64
    rows: np.ndarray  # (P,) int32, row numbers into `keys`
    weights: np.ndarray  # (P,) float32, idf * field weight * saturated term frequency
    keys: np.ndarray  # (N,) int64, the chunk rowid of each row


class LexicalIndex:
    """BM25 over chunks, kept in the catalog's SQLite database (tables `terms`, `chunk_terms`)."""

    def __init__(self, db: sqlite3.Connection, context_weight: int = 2) -> None:
        self.db = db
        self.context_weight = context_weight
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
            CREATE TABLE IF NOT EXISTS chunk_terms (
                chunk INTEGER PRIMARY KEY, term_ids BLOB NOT NULL, counts BLOB NOT NULL
            );
            """
        )
        self._vocabulary: dict[str, int] = {}
        self._postings: _Postings | None = None
        self._data_version = -1
        self._sync()

    @property
    def scheme(self) -> str:
        """What the stored terms were computed with: terms stored by another scheme must be rebuilt."""
        return f"bigram+word;context*{self.context_weight}"

    def rebuild(self, chunks: Sequence[tuple[int, str, str]]) -> None:
        """Replace every chunk's terms, from (rowid, text, context) rows, inside the caller's transaction."""
        self.db.execute("DELETE FROM chunk_terms")
        if chunks:
            self.add([r for r, _, _ in chunks], [t for _, t, _ in chunks], [c for _, _, c in chunks])
        self._postings = None

    def _sync(self) -> None:
        """Reload what another process (the CLI beside a running bot) committed since we last looked."""
        (version,) = self.db.execute("PRAGMA data_version").fetchone()
        if version != self._data_version:
            self._vocabulary = dict(self.db.execute("SELECT term, id FROM terms"))
            self._postings = None
            self._data_version = version

    def _term_ids(self, terms: Iterable[str]) -> None:
        """Give every new term an id; the caller's transaction makes ids and postings land together."""
        new = [t for t in dict.fromkeys(terms) if t not in self._vocabulary]
        if not new:
            return
        (last,) = self.db.execute("SELECT coalesce(max(id), -1) FROM terms").fetchone()
        assigned = {term: last + 1 + i for i, term in enumerate(new)}
        self.db.executemany(
            "INSERT INTO terms(id, term) VALUES (?, ?)", [(i, t) for t, i in assigned.items()]
        )
        self._vocabulary.update(assigned)

    def add(self, chunk_rowids: Sequence[int], texts: Sequence[str], contexts: Sequence[str]) -> None:
        """Index chunks, each with its context (`chunk_context`), inside the caller's transaction."""
        self._sync()
        all_counts = [
            chunk_terms(text, context, self.context_weight) for text, context in zip(texts, contexts, strict=True)
        ]
        self._term_ids(term for counts in all_counts for term in counts)
        rows = []
        for rowid, counts in zip(chunk_rowids, all_counts, strict=True):
            ids = np.fromiter((self._vocabulary[t] for t in counts), np.int32, len(counts))
            rows.append((rowid, ids.tobytes(), np.fromiter(counts.values(), np.int32, len(counts)).tobytes()))
        self.db.executemany("INSERT OR REPLACE INTO chunk_terms VALUES (?, ?, ?)", rows)
        self._postings = None

    def remove(self, chunk_rowids: Sequence[int]) -> None:
        self.db.executemany("DELETE FROM chunk_terms WHERE chunk = ?", [(r,) for r in chunk_rowids])
        self._postings = None

    def invalidate(self) -> None:
        self._postings = None

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(chunk rowid, BM25 score) of the k best chunks, best first; chunks sharing no term are left out."""
        self._sync()
        postings = self._postings or self._build()
        scores = np.zeros(len(postings.keys), np.float32)
        for term, count in lexical_terms(query).items():
            term_id = self._vocabulary.get(term)
            if term_id is None or term_id + 1 >= len(postings.starts):
                continue
            lo, hi = postings.starts[term_id], postings.starts[term_id + 1]
            scores[postings.rows[lo:hi]] += count * postings.weights[lo:hi]
        k = min(k, int(np.count_nonzero(scores)))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(postings.keys[i]), float(scores[i])) for i in top]

    def _build(self) -> _Postings:
        records = self.db.execute("SELECT chunk, term_ids, counts FROM chunk_terms ORDER BY chunk").fetchall()
        keys = np.fromiter((r[0] for r in records), np.int64, len(records))
        id_parts = [np.frombuffer(r[1], np.int32) for r in records]
        count_parts = [np.frombuffer(r[2], np.int32) for r in records]
        vocabulary_size = max(self._vocabulary.values(), default=0) + 1
        if not records:
            empty = np.zeros(0, np.int32)
            self._postings = _Postings(
                np.zeros(vocabulary_size + 1, np.int64), empty, empty.astype(np.float32), keys
            )
            return self._postings
        term_ids = np.concatenate(id_parts)  # (P,)
        counts = np.concatenate(count_parts).astype(np.float32)  # (P,)
        rows = np.repeat(np.arange(len(records), dtype=np.int32), [len(p) for p in id_parts])  # (P,)

        field_of_term = np.zeros(vocabulary_size, np.int8)  # 0: `c:` bigrams, 1: `w:` words
        for term, term_id in self._vocabulary.items():
            field_of_term[term_id] = 0 if term.startswith("c:") else 1
        field = field_of_term[term_ids]  # (P,)
        field_weights = np.array([FIELD_WEIGHTS["c"], FIELD_WEIGHTS["w"]], np.float32)

        weights = np.zeros(len(term_ids), np.float32)
        for f in (0, 1):
            mask = field == f
            lengths = np.bincount(rows[mask], weights=counts[mask], minlength=len(records))  # (N,)
            average = max(float(lengths.mean()), 1e-9)
            norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[rows[mask]] / average)
            weights[mask] = counts[mask] * (BM25_K1 + 1) / (counts[mask] + norm) * field_weights[f]

        document_frequency = np.bincount(term_ids, minlength=vocabulary_size)  # (V,)
        n = len(records)
        idf = np.log1p((n - document_frequency + 0.5) / (document_frequency + 0.5)).astype(np.float32)
        weights *= idf[term_ids]

        order = np.argsort(term_ids, kind="stable")
        starts = np.zeros(vocabulary_size + 1, np.int64)
        np.cumsum(document_frequency, out=starts[1:])
        self._postings = _Postings(starts, rows[order], weights[order], keys)
        return self._postings
