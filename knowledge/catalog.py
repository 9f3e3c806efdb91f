"""The catalog: SQLite record of documents and chunks (the source of truth), and the ingest journal.

Chroma holds vectors only. A source is written in the journal (`pending`) before its vectors change and
leaves it only after the catalog and Chroma agree again, so a crash at any point is repaired by `recover`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL REFERENCES documents(source),
    ordinal INTEGER NOT NULL,
    section TEXT,
    page INTEGER,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    injection TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks(source);
CREATE TABLE IF NOT EXISTS pending (source TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DocumentRecord:
    source: str
    content_hash: str
    title: str
    kind: str
    chunks: int
    characters: int
    added_at: str


@dataclass(frozen=True)
class ChunkRecord:
    rowid: int
    id: str
    source: str
    title: str
    ordinal: int
    section: str | None
    page: int | None
    start: int
    end: int
    text: str
    injection: str


def open_catalog(path: Path) -> sqlite3.Connection:
    """The catalog's connection. Any thread may use it (an HTTP server searches from several); the caller
    serialises their use, as `KnowledgeBase` does with its lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def get_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def document(db: sqlite3.Connection, source: str) -> DocumentRecord | None:
    row = db.execute("SELECT * FROM documents WHERE source = ?", (source,)).fetchone()
    return None if row is None else DocumentRecord(*row)


def documents(db: sqlite3.Connection) -> list[DocumentRecord]:
    return [DocumentRecord(*row) for row in db.execute("SELECT * FROM documents ORDER BY source")]


def chunk_keys(db: sqlite3.Connection, source: str) -> list[tuple[int, str]]:
    """(rowid, id) of every chunk of a source."""
    return [
        (int(r), str(i)) for r, i in db.execute("SELECT rowid, id FROM chunks WHERE source = ?", (source,))
    ]


def chunks_by_rowid(db: sqlite3.Connection, rowids: list[int]) -> dict[int, ChunkRecord]:
    found: dict[int, ChunkRecord] = {}
    for start in range(0, len(rowids), 500):
        batch = rowids[start : start + 500]
        marks = ",".join("?" * len(batch))
        query = (
            "SELECT c.rowid, c.id, c.source, d.title, c.ordinal, c.section, c.page, c.start, "
            'c."end", c.text, c.injection FROM chunks c JOIN documents d ON d.source = c.source '
            f"WHERE c.rowid IN ({marks})"
        )
        for row in db.execute(query, batch):
            found[int(row[0])] = ChunkRecord(*row)
    return found


def rowids_of(db: sqlite3.Connection, ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        marks = ",".join("?" * len(batch))
        found.update(
            (str(i), int(r))
            for i, r in db.execute(f"SELECT id, rowid FROM chunks WHERE id IN ({marks})", batch)
        )
    return found
