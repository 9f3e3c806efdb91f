"""Conversations to token ids and labels: the loss falls on the assistant's words, never on the prompt.

Each conversation is rendered through the same chat template the bot answers with (`bot.model.chat_format`),
one assistant turn at a time: the text up to the generation prompt is the prompt, what the template adds for
the answer (its words and the end-of-turn token) is trained. Pieces are tokenised one by one, so the prompt's
token ids are exactly those the model sees at answer time, and the answer's are those it must produce.
Models without a chat template use the Alpaca or KoAlpaca text format, with the EOS token ending each answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import DomainbotError
from bot.model.backend import Message
from bot.model.chat_format import ChatFormat
from bot.model.text_formats import PromptFormat, render
from training.datasets import ChatMessage

IGNORE_INDEX = -100  # label of a token that carries no loss (cross_entropy's default ignore_index)


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens, else the token id itself

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


class ConversationEncoder:
    """Encodes conversations for one model folder's tokenizer and prompt format."""

    def __init__(self, folder: Path, prompt_format: PromptFormat = "chat") -> None:
        self.format = ChatFormat(folder)
        self.prompt_format = prompt_format
        if prompt_format == "chat" and not self.format.has_template:
            raise DomainbotError(
                f"The model in {folder} has no chat template, so conversations cannot be rendered for it. "
                "Train with --prompt-format alpaca or koalpaca."
            )
        eos = self.format.eos_token_id
        self.eos_id = eos
        pad = self.format.special_tokens.get("pad_token")
        pad_id = self.format.tokenizer.token_to_id(pad) if pad else None
        self.pad_id: int = pad_id if pad_id is not None else (eos if eos is not None else 0)

    def _render(self, messages: Sequence[Message], open_turn: bool) -> str:
        if self.prompt_format == "chat":
            return self.format.render(messages, add_generation_prompt=open_turn)
        return render(messages, self.prompt_format)

    def _tokens(self, text: str, first: bool) -> list[int]:
        # The chat template writes its special tokens itself; Alpaca text needs the tokenizer's BOS, as at answer time.
        return self.format.encode(text, add_special_tokens=first and self.prompt_format != "chat")

    def encode(self, messages: Sequence[ChatMessage], last_turn_only: bool = False) -> EncodedExample:
        """Every assistant turn is trained (only the last with `last_turn_only`); everything else is prompt."""
        plain: list[Message] = [{"role": m.role, "content": m.content} for m in messages]
        input_ids: list[int] = []
        labels: list[int] = []
        done = ""  # the text encoded so far
        for index, message in enumerate(plain):
            if message["role"] != "assistant":
                continue
            prompt = self._render(plain[:index], open_turn=True)
            answered = self._render(plain[: index + 1], open_turn=False)
            if not prompt.startswith(done) or not answered.startswith(prompt):
                raise DomainbotError(
                    "The chat template does not render a conversation as a growing text (it rewrites earlier "
                    "turns), so the answer tokens cannot be told from the prompt. Use one assistant turn per "
                    "example, or --prompt-format alpaca."
                )
            prompt_ids = self._tokens(prompt[len(done) :], first=not done)
            answer_ids = self._tokens(answered[len(prompt) :], first=False)
            if self.prompt_format != "chat" and self.eos_id is not None:
                answer_ids.append(self.eos_id)
            trained = not last_turn_only or index == len(plain) - 1
            input_ids += prompt_ids + answer_ids
            labels += [IGNORE_INDEX] * len(prompt_ids) + (answer_ids if trained else [IGNORE_INDEX] * len(answer_ids))
            done = answered
        if not labels or all(label == IGNORE_INDEX for label in labels):
            raise DomainbotError("A training example has no assistant answer to learn from.")
        return EncodedExample(input_ids, labels)

    def encode_completion(self, prompt: Sequence[ChatMessage], completion: str) -> EncodedExample:
        """A prompt and one candidate answer (preference rounds score several answers to one prompt)."""
        return self.encode([*prompt, ChatMessage(role="assistant", content=completion)])

    def encode_prompt(self, prompt: Sequence[ChatMessage]) -> list[int]:
        """The prompt's ids, ready for the model to generate the answer (as the bot encodes it)."""
        plain: list[Message] = [{"role": m.role, "content": m.content} for m in prompt]
        return self._tokens(self._render(plain, open_turn=True), first=True)


def truncate(example: EncodedExample, max_len: int) -> EncodedExample | None:
    """At most `max_len` tokens; None when nothing trained is left.

    When only prompt tokens stand in the way, the oldest of them go (a long logged prompt keeps its answer);
    otherwise the example keeps its first `max_len` tokens.
    """
    if len(example) <= max_len:
        return example
    overflow = len(example) - max_len
    if all(label == IGNORE_INDEX for label in example.labels[:overflow]):
        cut = EncodedExample(example.input_ids[overflow:], example.labels[overflow:])
    else:
        cut = EncodedExample(example.input_ids[:max_len], example.labels[:max_len])
    return cut if cut.trained_tokens else None
