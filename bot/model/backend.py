"""The generation interface every backend implements, and its transformers implementation.

A backend renders a conversation through the model's chat template and streams the answer as text pieces.
The transformers backend runs its own decode loop over the KV cache instead of `model.generate`: it yields
each piece as soon as its token is chosen, with no streamer thread in between.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

if TYPE_CHECKING:
    import torch

    from bot.model.loader import LoadedModel


class Message(TypedDict):
    """One chat turn, in the shape chat templates expect."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None


@dataclass
class GenerationResult:
    """Filled in while a generation streams; complete once the stream is exhausted."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    # 'eos' (the model ended its turn), 'length' (max_new_tokens reached), 'stopped' (the caller stopped).
    finish_reason: str = "stopped"
    timings: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """Turns a conversation into a streamed answer."""

    name: str
    model_name: str
    adapter: str | None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the rendered prompt for `messages` takes."""
        ...

    def context_window(self) -> int:
        """Most tokens (prompt plus answer) the model attends to."""
        ...

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        """Yield the answer's text piece by piece, filling `result` as it goes."""
        ...


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without splitting multi-byte characters."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)  # type: ignore[attr-defined]
        # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def flush(self) -> str:
        text: str = self.tokenizer.decode(self.ids, skip_special_tokens=True)  # type: ignore[attr-defined]
        delta = text[len(self.emitted) :] if text.startswith(self.emitted) else ""
        self.emitted = text
        return delta


def choose_next_token(
    logits: torch.Tensor, seen: torch.Tensor, params: GenerationParams, generator: torch.Generator | None
) -> int:
    """Pick the next token from (V,) logits: repetition penalty, then greedy or temperature + top-p."""
    import torch

    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen.numel():
        scores = logits[seen]
        logits[seen] = torch.where(
            scores > 0, scores / params.repetition_penalty, scores * params.repetition_penalty
        )
    if params.temperature == 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the most likely token).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class TransformersBackend:
    """Generation with a transformers model on CPU, CUDA or MPS."""

    name = "transformers"

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model_name = loaded.name
        self.adapter = loaded.adapter
        config_eos = loaded.model.generation_config.eos_token_id
        eos = {config_eos} if isinstance(config_eos, int) else set(config_eos or [])
        if loaded.tokenizer.eos_token_id is not None:
            eos.add(int(loaded.tokenizer.eos_token_id))
        self.eos_ids = frozenset(eos)
        # transformers 5 renamed the forward argument that carries the KV cache.
        forward_args = inspect.signature(loaded.model.forward).parameters
        self.cache_arg = "cache" if "cache" in forward_args else "past_key_values"

    def encode(self, messages: Sequence[Message]) -> list[int]:
        conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
        encoded: Any = self.loaded.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return [int(i) for i in encoded["input_ids"]]

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.encode(messages))

    def context_window(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 2048))

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        import torch
        from transformers import DynamicCache

        started = time.perf_counter()
        model, device = self.loaded.model, self.loaded.device
        prompt = self.encode(messages)
        result.prompt_tokens = len(prompt)
        budget = min(params.max_new_tokens, self.context_window() - len(prompt))
        if budget <= 0:
            result.finish_reason = "length"
            return
        generator = None
        if params.temperature > 0.0:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(params.seed if params.seed is not None else torch.seed())
        seen = torch.tensor(prompt, dtype=torch.long)
        decoder = IncrementalDecoder(self.loaded.tokenizer)
        cache = DynamicCache()
        step_input = torch.tensor([prompt], dtype=torch.long, device=device)  # (1, T) on prefill, then (1, 1)
        result.timings["prompt"] = time.perf_counter() - started
        result.finish_reason = "length"
        with torch.inference_mode():
            for _ in range(budget):
                out = model(input_ids=step_input, use_cache=True, logits_to_keep=1, **{self.cache_arg: cache})
                logits = out.logits[0, -1].to("cpu")  # (V,)
                token = choose_next_token(logits, seen, params, generator)
                if "first_token" not in result.timings:
                    result.timings["first_token"] = time.perf_counter() - started
                if token in self.eos_ids:
                    result.finish_reason = "eos"
                    break
                result.new_tokens += 1
                seen = torch.cat((seen, torch.tensor([token])))
                piece = decoder.push(token)
                if piece:
                    yield piece
                step_input = torch.tensor([[token]], dtype=torch.long, device=device)
        tail = decoder.flush()
        if tail:
            yield tail
        result.timings["generate"] = time.perf_counter() - started


def create_backend(loaded: LoadedModel, preference: str = "auto") -> Backend:
    """The backend chosen by configuration; 'auto' is transformers until a faster CPU backend is available."""
    if preference in ("auto", "transformers"):
        return TransformersBackend(loaded)
    from bot.errors import DomainbotError

    raise DomainbotError(f"Unknown backend {preference!r}: expected auto or transformers.")
