"""/v1/kb with the admin key, /v1/feedback into the same store Telegram and the terminal use, /healthz."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.bot.http.conftest import Server, keyed
from tests.front_end_pipeline import WARRANTY

ADMIN = "admin-key-made-up-for-tests"
DESCALING = "The descaling cycle of the espresso machine takes twelve minutes."


@pytest.fixture()
def admin_server(make_server: Callable[..., Any]) -> Iterator[Server]:
    with make_server(**keyed(admin_key=ADMIN)) as server:
        yield server


def upload(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def test_add_list_search_and_remove_a_document(admin_server: Server) -> None:
    with admin_server.client(ADMIN) as admin:
        added = admin.post("/v1/kb/documents", files=upload("descaling.md", f"# Descaling\n\n{DESCALING}\n".encode()))
        assert added.status_code == 201, added.text
        assert added.json()["outcome"] == "added" and added.json()["chunks"] == 1
        again = admin.post("/v1/kb/documents", files=upload("descaling.md", f"# Descaling\n\n{DESCALING}\n".encode()))
        assert again.json()["outcome"] == "unchanged"

        names = {d["name"]: d for d in admin.get("/v1/kb/documents").json()}
        assert set(names) == {"warranty.md", "descaling.md"} and names["descaling.md"]["title"] == "Descaling"

        found = admin.post("/v1/kb/search", json={"query": "how long does descaling take", "k": 1}).json()
        assert found[0]["source"].endswith("descaling.md") and DESCALING in found[0]["text"]

        removed = admin.delete("/v1/kb/documents", params={"source": "descaling.md"})
        assert removed.json() == {"source": added.json()["source"], "chunks": 1}
        assert not (admin_server.config.uploads_dir / "descaling.md").exists()
        gone = admin.delete("/v1/kb/documents", params={"source": "descaling.md"})
        assert gone.status_code == 404 and gone.json()["error"]["param"] == "source"


def test_bad_documents_are_refused_with_the_reason_and_nothing_stored_is_lost(admin_server: Server) -> None:
    with admin_server.client(ADMIN) as admin:
        first = admin.post("/v1/kb/documents", files=upload("guide.md", f"# Guide\n\n{DESCALING}\n".encode()))
        assert first.status_code == 201
        empty = admin.post("/v1/kb/documents", files=upload("guide.md", b""))
        assert empty.status_code == 422 and "empty file" in empty.json()["error"]["message"]
        binary = admin.post("/v1/kb/documents", files=upload("manual.pdf", b"%PDF-1.4 not really a pdf \x00\x01"))
        assert binary.status_code == 422 and "manual.pdf was not added" in binary.json()["error"]["message"]
        exe = admin.post("/v1/kb/documents", files=upload("tool.exe", b"MZ"))
        assert exe.status_code == 415 and ".exe" in exe.json()["error"]["message"]

        # The earlier version of guide.md is still there, on disk and in both indexes.
        listed = {d["name"]: d["chunks"] for d in admin.get("/v1/kb/documents").json()}
        assert listed == {"warranty.md": 1, "guide.md": 1}
        assert (admin_server.config.uploads_dir / "guide.md").read_text(encoding="utf-8").endswith(f"{DESCALING}\n")
        found = admin.post("/v1/kb/search", json={"query": "descaling cycle", "k": 1, "mode": "lexical"}).json()
        assert found[0]["source"].endswith("guide.md")


def test_feedback_ratings_scores_and_corrections(server: Server) -> None:
    with server.client() as client:
        answer = client.post("/v1/answer", json={"question": "How long is the grinder warranty?"}).json()
        interaction = answer["interaction_id"]
        up = client.post("/v1/feedback", json={"interaction_id": interaction, "rating": "up", "user": "ann"})
        assert up.json() == {"interaction_id": interaction, "rating": 1, "score": None, "correction_stored": False}
        scored = client.post("/v1/feedback", json={"interaction_id": interaction, "rating": 2, "user": "bob"})
        assert scored.json()["rating"] == -1 and scored.json()["score"] == 2
        corrected = client.post(
            "/v1/feedback",
            json={"interaction_id": interaction, "correction": f"{WARRANTY} Ask ann@example.com.", "user": "bob"},
        )
        assert corrected.json()["correction_stored"] is True
        unknown = client.post("/v1/feedback", json={"interaction_id": "nope", "rating": "down"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "interaction_id"
    stored = server.pipeline.feedback.get(interaction)
    assert sorted((r.rater_id, r.value, r.score) for r in stored.ratings) == [("ann", 1, None), ("bob", -1, 2)]
    assert stored.corrections[0].text.startswith(WARRANTY) and "ann@example.com" not in stored.corrections[0].text


def test_health_needs_no_key_and_says_what_is_served(make_server: Callable[..., Any]) -> None:
    with make_server(**keyed(api_key="k")) as server, server.client() as client:
        health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "scripted-model" and health["backend"] == "scripted"
    assert health["kb_chunks"] == 1 and health["uptime_seconds"] >= 0 and health["workers"] == 4
