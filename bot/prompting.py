"""Prompt building: system prompt, few-shot examples chosen by similarity, numbered passages, history.

Everything the model sees is built here, within a token budget. When the prompt is too long, the least
relevant passages go first, then the oldest turns, then the few-shot examples; the question always stays.
The messages are rendered by the backend: through the model's chat template, or as Alpaca or KoAlpaca text
(`bot/model/text_formats.py`) for models trained that way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError

from bot.errors import DomainbotError
from bot.model.backend import Message

M = TypeVar("M", bound=BaseModel)

PROMPTS_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT_FILE = PROMPTS_DIR / "default.yaml"
DEFAULT_FEWSHOT_FILE = PROMPTS_DIR / "fewshot.jsonl"


class AnswerLimits(BaseModel):
    """Generation settings that belong to the prompt's answer style; unset, the bot's settings apply."""

    max_new_tokens: int | None = Field(default=None, ge=1, description="Most tokens in one answer (caps the setting).")
    repetition_penalty: float | None = Field(
        default=None, ge=1.0, le=2.0, description="Replaces the setting's penalty."
    )
    stop: list[str] = Field(default_factory=list, description="Text that ends an answer (not included).")


class PromptText(BaseModel):
    """The editable wording of the answer prompt."""

    system: str
    passages_intro: str
    question_intro: str
    no_passages: str
    fenced_passage_note: str
    generation: AnswerLimits = AnswerLimits()


class FewShotExample(BaseModel):
    question: str
    passages: list[str] = []
    answer: str


class PassageLike(Protocol):
    """What prompt building needs from a retrieved passage."""

    @property
    def text(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass
class PromptParts:
    """The pieces of one prompt before rendering, kept so trimming can report what it dropped."""

    messages: list[Message]
    passages_used: int
    examples_used: int
    turns_used: int
    dropped: dict[str, int] = field(default_factory=dict)


def load_prompt_text(path: Path | None = None) -> PromptText:
    path = path or DEFAULT_PROMPT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainbotError(f"Prompt file {path} cannot be read ({exc}). Expected a UTF-8 YAML file.") from None
    except yaml.YAMLError as exc:
        raise DomainbotError(f"Prompt file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    try:
        return PromptText.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise DomainbotError(f"Prompt file {path} is not a valid prompt: {problems}.") from None


def load_jsonl_models(path: Path, model: type[M], what: str, expected: str) -> list[M]:
    """Every non-blank line of a UTF-8 JSON-lines file as `model`; a bad line fails naming the file, the line
    and `expected` (what each line should hold). `what` names the file in messages ("Few-shot file")."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainbotError(f"{what} {path} cannot be read ({exc}). Expected UTF-8 JSON lines.") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise DomainbotError(f"{what} {path}, line {number}: expected {expected} ({first}).") from None
    return items


def load_examples(path: Path | None = None) -> list[FewShotExample]:
    return load_jsonl_models(
        path or DEFAULT_FEWSHOT_FILE, FewShotExample, "Few-shot file", "an object with question, passages and answer"
    )


class ExampleSelector:
    """Picks the few-shot examples most similar to a question (cosine similarity of embeddings), those in the
    question's script first: an English embedder places Korean text anywhere, and a small model answers in
    the language of its examples."""

    def __init__(self, examples: Sequence[FewShotExample], embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.examples = list(examples)
        self.embed = embed
        self.vectors = embed([e.question for e in self.examples]) if self.examples else np.zeros((0, 1))

    def select(self, question: str, k: int) -> list[FewShotExample]:
        if k <= 0 or not self.examples:
            return []
        hangul = _is_hangul(question)
        same_script = np.array([_is_hangul(e.question) == hangul for e in self.examples], dtype=np.float32)
        scores = self.vectors @ self.embed([question])[0] + 2.0 * same_script  # (N,); cosine is at most 1
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.examples[i] for i in order]


def _is_hangul(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return sum("\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e" for c in letters) * 2 > len(letters)


def passages_block(passages: Sequence[str], text: PromptText) -> str:
    if not passages:
        return text.no_passages
    numbered = [f"[{i}] {passage}" for i, passage in enumerate(passages, start=1)]
    return text.passages_intro + "\n" + "\n\n".join(numbered)


def quote_passage(passage: PassageLike, flagged: bool, text: PromptText) -> str:
    """A passage as data, with a fence around text that reads like instructions to the model. The number in
    front is what the model cites; the source stays out, because a small model copies it into the answer."""
    body = " ".join(passage.text.split())
    if flagged:
        body = f"{text.fenced_passage_note}\n<<<\n{body}\n>>>"
    return body


def user_turn(question: str, passages: Sequence[str], text: PromptText) -> str:
    return f"{passages_block(passages, text)}\n\n{text.question_intro} {question}"


def build_messages(
    question: str,
    passages: Sequence[str],
    examples: Sequence[FewShotExample],
    history: Sequence[Message],
    text: PromptText,
    domain: str,
    count_tokens: Callable[[Sequence[Message]], int],
    budget: int,
) -> PromptParts:
    """The chat for one answer, trimmed to `budget` tokens: passages, then old turns, then examples go first."""
    system: Message = {"role": "system", "content": text.system.format(domain=domain).strip()}
    kept_passages, kept_history, kept_examples = list(passages), list(history), list(examples)

    def assemble() -> list[Message]:
        messages = [system]
        for example in kept_examples:
            messages.append({"role": "user", "content": user_turn(example.question, example.passages, text)})
            messages.append({"role": "assistant", "content": example.answer})
        messages.extend(kept_history)
        messages.append({"role": "user", "content": user_turn(question, kept_passages, text)})
        return messages

    messages = assemble()
    while count_tokens(messages) > budget:
        if kept_passages:
            kept_passages.pop()  # passages arrive best first
        elif kept_history:
            kept_history = kept_history[2:]
        elif kept_examples:
            kept_examples.pop()
        else:
            break
        messages = assemble()
    dropped = {
        "passages": len(passages) - len(kept_passages),
        "turns": (len(history) - len(kept_history)) // 2,
        "examples": len(examples) - len(kept_examples),
    }
    return PromptParts(messages, len(kept_passages), len(kept_examples), len(kept_history) // 2, dropped)
