"""The published schema (docs/openapi.json) is the one the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from bot.http.openapi import render
from tests.bot.http.conftest import Server

PUBLISHED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_published_schema_is_up_to_date() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is out of date; run `python -m bot.http.openapi docs/openapi.json`."
    )


def test_served_schema_matches_the_published_one(server: Server) -> None:
    with server.client() as client:
        served = client.get("/openapi.json").json()
    published = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    assert served == published
    assert {"/v1/answer", "/v1/feedback", "/v1/kb/documents", "/v1/kb/search", "/v1/chat/completions"} <= set(
        published["paths"]
    )
