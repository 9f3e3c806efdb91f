"""/v1/kb: list, add (upload), remove and search the knowledge base's documents. Admin key only.

Uploads go through the same loaders and size limit as `domainbot kb add`; a document that cannot be added is
refused with the reason, and the version of it stored before (if any) stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from bot.http.errors import ApiError, error_responses
from bot.http.schemas import DocumentAdded, DocumentInfo, DocumentRemoved, PassageOut, SearchRequest
from bot.http.state import ApiState, State, require_admin_key
from bot.uploads import incoming_path, ingest_upload, safe_file_name
from knowledge import KnowledgeBase, KnowledgeError
from knowledge.loaders import LOADERS

router = APIRouter(prefix="/v1/kb", dependencies=[Depends(require_admin_key)], tags=["knowledge base"])
COPY_CHUNK = 1 << 20


def knowledge(api: ApiState) -> KnowledgeBase:
    if api.pipeline.knowledge is None:
        raise ApiError(404, "This server runs without a knowledge base, so there are no documents to manage.")
    return api.pipeline.knowledge


def file_name(source: str) -> str:
    return Path(source).name or source  # "calculator" stays "calculator"


@router.get("/documents", response_model=list[DocumentInfo], responses=error_responses(401, 403))
async def list_documents(api: State) -> list[DocumentInfo]:
    """Every document, with its title, passages and when it was added."""
    records = await run_in_threadpool(knowledge(api).sources)
    return [
        DocumentInfo(
            source=r.source,
            name=file_name(r.source),
            title=r.title,
            kind=r.kind,
            chunks=r.chunks,
            characters=r.characters,
            added_at=r.added_at,
        )
        for r in records
    ]


@router.post(
    "/documents",
    response_model=DocumentAdded,
    status_code=201,
    responses=error_responses(401, 403, 413, 415, 422),
)
async def add_document(
    api: State, file: Annotated[UploadFile, File(description=f"One document: {', '.join(LOADERS)}.")]
) -> DocumentAdded:
    """Add one document (multipart upload); a document of the same name is replaced."""
    return await run_in_threadpool(_add, api, file)


def _add(api: ApiState, upload: UploadFile) -> DocumentAdded:
    kb = knowledge(api)
    name = safe_file_name(upload.filename)
    suffix = Path(name).suffix.lower()
    if suffix not in LOADERS:
        raise ApiError(
            415, f"Cannot read {suffix or 'files without an extension'}; send one of: {' '.join(LOADERS)}.", "file"
        )
    limit = api.config.max_document_bytes
    incoming = incoming_path(api.config.uploads_dir, name)
    try:
        with incoming.open("wb") as out:
            written = 0
            while chunk := upload.file.read(COPY_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ApiError(
                        413,
                        f"{name} is over the limit of {limit / 1e6:.1f} MB for documents (DOMAINBOT_MAX_DOCUMENT_MB).",
                        "file",
                    )
                out.write(chunk)
        with api.uploads:
            outcome = ingest_upload(kb, incoming, api.config.uploads_dir / name)
    finally:
        incoming.unlink(missing_ok=True)
    if outcome.outcome == "failed":
        raise ApiError(422, f"{outcome.name} was not added: {outcome.reason}.", "file")
    return DocumentAdded(
        name=outcome.name,
        source=str((api.config.uploads_dir / name).resolve()),
        outcome=outcome.outcome,
        chunks=outcome.chunks,
    )


@router.delete("/documents", response_model=DocumentRemoved, responses=error_responses(401, 403, 404, 409))
async def remove_document(
    api: State,
    source: Annotated[str, Query(min_length=1, max_length=4096, description="A source as listed, or its file name.")],
) -> DocumentRemoved:
    """Remove a document and all its passages from both indexes."""
    return await run_in_threadpool(_remove, api, source.strip())


def _remove(api: ApiState, name: str) -> DocumentRemoved:
    kb = knowledge(api)
    sources = [r.source for r in kb.sources()]
    matches = [s for s in sources if s == name] or [s for s in sources if file_name(s) == name]
    if not matches:
        raise ApiError(404, f"No source named {name!r}. GET /v1/kb/documents lists the sources.", "source")
    if len(matches) > 1:
        raise ApiError(409, f"Several sources are named {name!r}; send the full one: {', '.join(matches)}", "source")
    try:
        chunks = kb.remove(matches[0])
    except KnowledgeError as exc:
        raise ApiError(404, str(exc), "source") from None
    uploaded = Path(matches[0])
    if uploaded.parent == api.config.uploads_dir.resolve():
        uploaded.unlink(missing_ok=True)
    return DocumentRemoved(source=matches[0], chunks=chunks)


@router.post("/search", response_model=list[PassageOut], responses=error_responses(401, 403, 422))
async def search(body: SearchRequest, api: State) -> list[PassageOut]:
    """The passages that best match a query, best first, with source, location and score."""
    kb = knowledge(api)
    try:
        passages = await run_in_threadpool(kb.search, body.query, body.k, body.mode)
    except KnowledgeError as exc:
        raise ApiError(422, str(exc), "query") from None
    return [PassageOut(**p.to_json()) for p in passages]
