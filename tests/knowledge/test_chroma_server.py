"""The knowledge base with its vectors on a real Chroma server (`chroma run`, shipped with chromadb) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import DomainbotError
from bot.services import knowledge_config, open_knowledge
from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig, KnowledgeError
from tests.loopback import QuietHandler, serve

embedder = HashEmbedder(64)
GRINDER = "The burr grinder needs new burrs every 500 kilograms of coffee beans."
KETTLE = "The gooseneck kettle holds one litre of water and keeps it at a set temperature."
TOKEN = "chroma-token-" + "5" * 8


def chroma_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "chroma"
    return str(beside_python) if beside_python.is_file() else shutil.which("chroma")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh Chroma server on its own folder; it starts in about a second."""
    binary = chroma_binary()
    if binary is None:
        pytest.skip("the `chroma` command that chromadb installs is not on this machine")
    port = free_port()
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    command = [binary, "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                error = server.stderr.read().decode(errors="replace") if server.stderr else ""
                pytest.fail(f"`chroma run` did not start on {url}: {error[-500:]}")
            time.sleep(0.1)
    try:
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=10)


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "grinder.md").write_text(f"# Grinder\n\n{GRINDER}\n", encoding="utf-8")
    (folder / "kettle.md").write_text(f"# Kettle\n\n{KETTLE}\n", encoding="utf-8")
    return folder


def test_ingest_and_search_through_a_chroma_server(
    chroma_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, _ = chroma_server
    config = KnowledgeConfig(data_dir=tmp_path / "data", chroma_url=url)
    kb = KnowledgeBase(config, embedder)
    report = kb.add([write_docs(tmp_path / "docs")])
    assert [r.outcome for r in report.results] == ["added", "added"]
    # The vectors live on the server; the data folder keeps only the catalog and lexical index.
    assert not (config.store_dir / "chroma").exists()
    assert kb.stats()["vectors"] == 2 and kb.stats()["vectors_at"] == url
    # A second worker over the same data folder and server finds the same passages.
    other = KnowledgeBase(KnowledgeConfig(data_dir=tmp_path / "data", chroma_url=url), embedder)
    for base in (kb, other):
        assert base.search(GRINDER, k=1, mode="dense")[0].text.endswith(GRINDER)
        assert base.search("kettle litre water", k=1, mode="hybrid")[0].source.endswith("kettle.md")
    kb.remove(str(tmp_path / "docs" / "kettle.md"))
    assert other.vectors.count() == 1
    kb.close()
    other.close()


def test_a_chroma_server_that_goes_away_is_one_clear_error(
    chroma_server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    url, server = chroma_server
    kb = KnowledgeBase(KnowledgeConfig(data_dir=tmp_path / "data", chroma_url=url), embedder)
    kb.add([write_docs(tmp_path / "docs")])
    server.terminate()
    server.wait(timeout=10)
    with pytest.raises(KnowledgeError, match=f"The Chroma server at {url} failed to search: .*DOMAINBOT_CHROMA_URL"):
        kb.search(GRINDER, k=1, mode="dense")
    # What the catalog holds is untouched: lexical search still answers.
    assert kb.search("burr grinder", k=1, mode="lexical")[0].source.endswith("grinder.md")
    kb.close()


def test_the_token_goes_in_the_header_and_a_refusal_names_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    class Refuse(QuietHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            body = json.dumps({"error": "Unauthorized", "message": "bad token"}).encode()
            self.send_body(401, "application/json", body)

    with serve(Refuse) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("DOMAINBOT_CHROMA_URL", url)
        monkeypatch.setenv("DOMAINBOT_CHROMA_TOKEN", TOKEN)
        settings = Settings()
        assert TOKEN not in repr(knowledge_config(settings))
        with pytest.raises(DomainbotError, match=f"The Chroma server at {url} could not be reached") as caught:
            open_knowledge(settings, embedder)
    assert seen and all(line.endswith(f"Bearer {TOKEN}") for line in seen)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("url", ["chroma:8000", "http://user:secret@chroma:8000", "http://chroma:8000/api"])
def test_a_chroma_url_of_the_wrong_shape_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINBOT_CHROMA_URL", url)
    with pytest.raises(DomainbotError, match="Invalid knowledge base settings: `chroma_url` must") as caught:
        knowledge_config(Settings())
    assert "secret" not in str(caught.value)
