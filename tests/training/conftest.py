"""Tiny Llama folders for the training tests: built once per session, copied by nothing (read-only use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import build_tiny_model
from training.datasets import ChatMessage, SFTExample

QA = [
    ("What is the capital of France?", "Paris."),
    ("Numbers like what?", "42 and 3.14"),
    ("서울은?", "서울은 한국의 수도입니다."),
    ("What does domainbot learn from?", "It learns from ratings."),
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32)


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("other") / "model", hidden_size=48)


def conversation(question: str, answer: str) -> SFTExample:
    return SFTExample(
        messages=[ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=answer)]
    )


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    lines = [conversation(q, a).model_dump_json() for q, a in QA]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
