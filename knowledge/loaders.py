"""Document loaders: bytes on disk to one plain text with structure (headings, pages, paragraphs) marked.

Each loader returns a `Document` whose `text` is what gets chunked and cited; `blocks` mark paragraphs and
headings in it by character offsets, with the section (heading path) or page each belongs to.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".jsonl")
GLOB_CHARS = re.compile(r"[*?\[]")
# A text whose share of control characters (other than whitespace) exceeds this is binary, not text.
MAX_CONTROL_SHARE = 0.01
# A non-UTF-8 decoding is accepted as Korean when most of its non-ASCII characters are Hangul syllables.
MIN_HANGUL_SHARE = 0.6
HTML_DROPPED = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# fmt: off
HTML_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "li", "ul", "ol",
    "dl", "dt", "dd", "pre", "blockquote", "table", "tr", "td", "th", "figure", "figcaption", "form",
    "address", "hr",
}
# fmt: on
MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


class LoadError(Exception):
    """A file that cannot become a document; the message is the reason shown to the operator."""


@dataclass(frozen=True)
class Block:
    """A paragraph or heading: `text[start:end]` of its document."""

    start: int
    end: int
    section: str | None = None
    page: int | None = None
    is_heading: bool = False


@dataclass(frozen=True)
class Document:
    source: str
    title: str
    text: str
    blocks: tuple[Block, ...]
    content_hash: str
    kind: str


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Builder:
    """Appends paragraphs and headings to one text, recording each one's offsets and section."""

    parts: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    headings: list[tuple[int, str]] = field(default_factory=list)
    length: int = 0

    @property
    def section(self) -> str | None:
        return " > ".join(text for _, text in self.headings) or None

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        self.headings = [(lvl, t) for lvl, t in self.headings if lvl < level] + [(level, text)]
        self._append(text, page=None, is_heading=True)

    def paragraph(self, text: str, page: int | None = None) -> None:
        text = text.strip()
        if text:
            self._append(text, page=page, is_heading=False)

    def _append(self, text: str, page: int | None, is_heading: bool) -> None:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.blocks.append(Block(self.length, self.length + len(text), self.section, page, is_heading))
        self.parts.append(text)
        self.length += len(text)

    def build(self, source: str, title: str, digest: str, kind: str) -> Document:
        text = "".join(self.parts)
        if not text.strip():
            raise LoadError("no text in it (empty file, or only markup / images)")
        return Document(source, title, text, tuple(self.blocks), digest, kind)


def decode_text(data: bytes) -> str:
    """Decode bytes by their content: BOM, UTF-16 without BOM, UTF-8, cp949/EUC-KR, then a detector."""
    if data.startswith(b"\xef\xbb\xbf"):
        return _checked(data[3:].decode("utf-8", errors="replace"))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _checked(data.decode("utf-16"))
    # Before UTF-8: ASCII text in UTF-16 is also valid UTF-8, full of NUL characters.
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return _checked(utf16)
    try:
        return _checked(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    try:
        korean = data.decode("cp949")
    except UnicodeDecodeError:
        korean = None
    if korean is not None and _hangul_share(korean) >= MIN_HANGUL_SHARE:
        return _checked(korean)
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise LoadError("binary content: no text encoding fits (is the extension right?)")
    return _checked(str(best))


def _utf16_without_bom(data: bytes) -> str | None:
    # ASCII-heavy UTF-16 has a zero byte in every other position; that pattern is the tell.
    if len(data) < 4 or len(data) % 2:
        return None
    even_zeros, odd_zeros = data[0::2].count(0), data[1::2].count(0)
    half = len(data) // 2
    encoding = "utf-16-le" if odd_zeros > 0.3 * half and even_zeros < 0.05 * half else None
    if even_zeros > 0.3 * half and odd_zeros < 0.05 * half:
        encoding = "utf-16-be"
    if encoding is None:
        return None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _hangul_share(text: str) -> float:
    non_ascii = [c for c in text if ord(c) > 127]
    if not non_ascii:
        return 1.0
    return sum("\uac00" <= c <= "\ud7a3" for c in non_ascii) / len(non_ascii)


def _checked(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text:
        control = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t\f")
        if control / len(text) > MAX_CONTROL_SHARE or "\ufffd" * 4 in text:
            raise LoadError("binary content, not text (is the extension right?)")
    return text


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def load_txt(data: bytes, path: Path, source: str, digest: str) -> Document:
    builder = _Builder()
    for paragraph in _paragraphs(decode_text(data)):
        builder.paragraph(paragraph)
    return builder.build(source, path.stem, digest, "txt")


def load_markdown(data: bytes, path: Path, source: str, digest: str) -> Document:
    builder = _Builder()
    title: str | None = None
    pending: list[str] = []
    in_fence = False
    for line in decode_text(data).split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else MARKDOWN_HEADING.match(line)
        if match:
            builder.paragraph("\n".join(pending))
            pending = []
            level, heading = len(match.group(1)), match.group(2)
            title = title or (heading if level == 1 else None)
            builder.heading(level, heading)
        elif not line.strip() and not in_fence:
            builder.paragraph("\n".join(pending))
            pending = []
        else:
            pending.append(line)
    builder.paragraph("\n".join(pending))
    return builder.build(source, title or path.stem, digest, "md")


def load_html(data: bytes, path: Path, source: str, digest: str) -> Document:
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    soup = BeautifulSoup(decode_text(data), "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    builder = _Builder()
    buffer: list[str] = []

    def flush() -> None:
        builder.paragraph(" ".join("".join(buffer).split()))
        buffer.clear()

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                buffer.append(str(child))
            elif isinstance(child, Tag) and child.name not in HTML_DROPPED:
                if child.name in HTML_HEADINGS:
                    flush()
                    builder.heading(HTML_HEADINGS[child.name], child.get_text(" ", strip=True))
                elif child.name == "br":
                    buffer.append(" ")
                elif child.name in HTML_BLOCKS:
                    flush()
                    walk(child)
                    flush()
                else:
                    walk(child)

    walk(soup.body or soup)
    flush()
    if not title:
        first = next((b for b in builder.blocks if b.is_heading), None)
        title = "".join(builder.parts)[first.start : first.end] if first else path.stem
    return builder.build(source, title, digest, "html")


def load_pdf(data: bytes, path: Path, source: str, digest: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    builder = _Builder()
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("the PDF is encrypted; decrypt it first")
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else path.stem
        for number, page in enumerate(reader.pages, start=1):
            for paragraph in _paragraphs(page.extract_text() or ""):
                builder.paragraph(paragraph, page=number)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    return builder.build(source, title, digest, "pdf")


def load_docx(data: bytes, path: Path, source: str, digest: str) -> Document:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise LoadError(f"not a readable .docx ({type(exc).__name__}: {exc})") from None
    builder = _Builder()
    title = document.core_properties.title or ""
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        level = _docx_heading_level(style or "")
        if level is not None:
            title = title or (paragraph.text.strip() if level <= 1 else "")
            builder.heading(level, paragraph.text)
        else:
            builder.paragraph(paragraph.text)
    for table in document.tables:
        for row in table.rows:
            builder.paragraph(" | ".join(cell.text.strip() for cell in row.cells))
    return builder.build(source, title or path.stem, digest, "docx")


def _docx_heading_level(style: str) -> int | None:
    """0 for the Title style (above every heading), N for `Heading N`, None for body text."""
    if style == "Title":
        return 0
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def load_csv(data: bytes, path: Path, source: str, digest: str) -> Document:
    builder = _Builder()
    rows = csv.DictReader(io.StringIO(decode_text(data)))
    for row in rows:
        builder.paragraph("; ".join(f"{key}: {value}" for key, value in row.items() if key and value))
    return builder.build(source, path.stem, digest, "csv")


def load_jsonl(data: bytes, path: Path, source: str, digest: str) -> Document:
    builder = _Builder()
    for number, line in enumerate(decode_text(data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"line {number} is not JSON ({exc.msg})") from None
        if isinstance(record, dict):
            text = record.get("text")
            text = (
                text
                if isinstance(text, str)
                else "; ".join(f"{k}: {v}" for k, v in record.items() if isinstance(v, str | int | float))
            )
        else:
            text = str(record)
        builder.paragraph(text)
    return builder.build(source, path.stem, digest, "jsonl")


Loader = Callable[[bytes, Path, str, str], Document]
LOADERS: dict[str, Loader] = {
    ".txt": load_txt,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".csv": load_csv,
    ".jsonl": load_jsonl,
}


def source_of(path: Path) -> str:
    """How a file is named in the knowledge base: its absolute path."""
    return str(path.expanduser().resolve())


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing what is missing, unsupported or too large."""
    if path.suffix.lower() not in LOADERS:
        raise LoadError(
            f"unsupported file type {path.suffix or '(none)'}; expected one of {', '.join(LOADERS)}"
        )
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(
                f"file is {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB "
                "(raise DOMAINBOT_MAX_DOCUMENT_MB to allow it)"
            )
        if size == 0:
            raise LoadError("empty file")
        return path.read_bytes()
    except FileNotFoundError:
        raise LoadError("does not exist") from None
    except OSError as exc:
        raise LoadError(f"cannot be read ({exc.strerror or exc})") from None


def parse_document(path: Path, data: bytes, digest: str) -> Document:
    """Turn a file's bytes into a Document with the loader its extension names."""
    return LOADERS[path.suffix.lower()](data, path, source_of(path), digest)


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by paths, folders (recursively, supported types) and globs; and (name, reason) misses."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOADERS)
            if not found:
                missing.append((text, f"folder has no supported files ({', '.join(LOADERS)})"))
            files.extend(found)
        elif path.exists() or not GLOB_CHARS.search(text):
            files.append(path)
        else:
            matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matched:
                missing.append((text, "no file matches this pattern"))
            files.extend(matched)
    unique = list(dict.fromkeys(files))
    return unique, missing
