"""kill -9 in the middle of an ingest or a removal, then the same command again: no duplicates, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowledge import HashEmbedder, KnowledgeBase, KnowledgeConfig
from knowledge.loaders import content_hash
from tests.knowledge.conftest import CONSISTENT, consistency

REPO = Path(__file__).resolve().parents[2]
PARAGRAPH = "Paragraph {i} of file {name} describes the {topic} procedure in several plain sentences."


def write_docs(folder: Path, version: int, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        text = "\n\n".join(PARAGRAPH.format(i=i, name=name, topic=f"v{version}") for i in range(6))
        (folder / f"{name}.md").write_text(f"# {name}\n\n{text}\n", encoding="utf-8")


def config_for(data_dir: Path) -> KnowledgeConfig:
    return KnowledgeConfig(data_dir=data_dir, chunk_tokens=24, chunk_overlap=4, embed_batch_chunks=6)


def run_child(data_dir: Path, docs: Path, phase: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.knowledge.crash_child", str(data_dir), str(docs), phase]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)


@pytest.mark.parametrize(
    "phase", ["embed", "parent-kills", "after-upsert", "inside-transaction", "before-stale-delete", "remove"]
)
def test_rerun_after_kill_9_leaves_no_duplicates_or_orphans(
    clean_env: Path, tmp_path: Path, phase: str
) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 1, ["a", "b", "c", "d"])
    first = KnowledgeBase(config_for(clean_env), HashEmbedder())
    assert first.add([docs]).ok
    first_sources = first.sources()
    first.close()
    write_docs(docs, 2, ["b", "d", "e", "f"])  # two changed, two new, two unchanged

    child = run_child(clean_env, docs, phase)
    if phase == "parent-kills":
        deadline = time.monotonic() + 60
        while not (clean_env / "ready").exists():
            assert child.poll() is None and time.monotonic() < deadline, "child never reached the kill point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, stderr.decode()

    kb = KnowledgeBase(config_for(clean_env), HashEmbedder())
    if phase == "remove":
        sources = sorted(d.source for d in first_sources)
        # The child removed sources[0], then died removing sources[1]: the same command again finishes it.
        assert kb.remove(sources[1]) == 0
        for source in sources[2:]:
            kb.remove(source)
        assert kb.sources() == [] and kb.vectors.count() == 0
    else:
        report = kb.add([docs])
        assert report.ok
        assert {Path(d.source).name: d.content_hash for d in kb.sources()} == {
            p.name: content_hash(p.read_bytes()) for p in docs.iterdir()
        }
        assert kb.add([docs]).count("unchanged") == 6
        v1_left = [p for p in kb.search("v1 procedure", k=50) if "topic v1" in p.text]
        assert all(Path(p.source).name in ("a.md", "c.md") for p in v1_left)
    assert consistency(kb) == CONSISTENT
