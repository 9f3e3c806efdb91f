"""Typed training records (placeholder until the dataset loaders land)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    role: Role
    content: str


class SFTExample(BaseModel):
    messages: list[ChatMessage]


class PreferenceExample(BaseModel):
    prompt: list[ChatMessage]
    chosen: str
    rejected: str


class KTOExample(BaseModel):
    prompt: list[ChatMessage]
    completion: str
    desirable: bool


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sft(path: Path, fmt: str) -> list[SFTExample]:
    return [SFTExample.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_preferences(path: Path) -> list[PreferenceExample]:
    return [
        PreferenceExample.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line
    ]


def load_kto(path: Path) -> list[KTOExample]:
    return [KTOExample.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
