"""GET /healthz: is the bot up, and what does it serve. No key: load balancers and monitors call it."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from bot import __version__
from bot.http.schemas import HealthResponse
from bot.http.state import State
from bot.model.swap import serving

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz(api: State) -> HealthResponse:
    backend = serving(api.pipeline.backend)
    kb = api.pipeline.knowledge
    chunks = None if kb is None else await run_in_threadpool(kb.chunk_count)
    return HealthResponse(
        version=__version__,
        model=backend.model_name,
        adapter=backend.adapter,
        backend=backend.name,
        kb_chunks=chunks,
        uptime_seconds=round(time.monotonic() - api.started, 3),
        workers=api.config.workers,
    )
