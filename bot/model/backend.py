"""The generation interface every backend implements, and its transformers implementation.

A backend renders a conversation through the model's chat template and streams the answer as text pieces.
The transformers backend runs its own decode loop over the KV cache instead of `model.generate`: it yields
each piece as soon as its token is chosen, with no streamer thread in between.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from bot.model import text_formats
from bot.model.text_formats import PromptFormat

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
    # Text that ends the answer (not included), for prompt formats without an end-of-turn token.
    stop: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    """Filled in while a generation streams; complete once the stream is exhausted."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    # 'eos' (the model ended its turn), 'stop' (a stop string), 'length' (max_new_tokens reached),
    # 'stopped' (the caller stopped reading).
    finish_reason: str = "stopped"
    timings: dict[str, float] = field(default_factory=dict)


class Backend(Protocol):
    """Turns a conversation into a streamed answer."""

    # Read-only here, so a backend may answer them with properties (see bot/model/swap.py).
    @property
    def name(self) -> str: ...
    @property
    def model_name(self) -> str: ...
    @property
    def adapter(self) -> str | None:
        """The LoRA adapter merged into the weights (its folder or registry name), or None."""
        ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens the rendered prompt for `messages` takes."""
        ...

    def context_window(self) -> int:
        """Most tokens (prompt plus answer) the model attends to."""
        ...

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        """Yield the answer's text piece by piece, filling `result` as it goes."""
        ...


class TextDecoder(Protocol):
    def decode(self, ids: list[int], /, skip_special_tokens: bool = ...) -> Any: ...


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without splitting multi-byte characters.

    Only a short window is decoded per token: the text of the ids since `prefix` minus the text of the ids
    between `prefix` and `read`. Keeping one earlier token in the window lets tokenizers that drop a leading
    space at the start of a decode (sentencepiece) produce the same text as decoding everything.
    """

    def __init__(self, tokenizer: TextDecoder) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def _pending(self) -> str:
        before = str(self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True))
        text = str(self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True))
        # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before) :]

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        return self._pending()

    def flush(self) -> str:
        if self.read == len(self.ids):
            return ""
        before = str(self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True))
        text = str(self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True))
        self.prefix = self.read = len(self.ids)
        return text[len(before) :]


class StopStrings:
    """Passes text through until a stop string appears, holding back any tail that could be one's start."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.pending += piece
        hits = [index for stop in self.stops if (index := self.pending.find(stop)) >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[: min(hits)], "", True
            return out
        keep = max(
            (k for stop in self.stops for k in range(1, len(stop)) if self.pending.endswith(stop[:k])), default=0
        )
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class AnswerText:
    """A token stream's text as it is shown: characters kept whole, and cut before the first stop string."""

    def __init__(self, tokenizer: TextDecoder, stops: Sequence[str]) -> None:
        self.decoder = IncrementalDecoder(tokenizer)
        self.stops = StopStrings(stops)

    @property
    def stopped(self) -> bool:
        return self.stops.stopped

    def push(self, token_id: int) -> str:
        """The text `token_id` adds that can be shown now."""
        return self.stops.feed(self.decoder.push(token_id))

    def finish(self) -> str:
        """What is still held back once the answer ends (nothing after a stop string)."""
        if self.stops.stopped:
            return ""
        return self.stops.feed(self.decoder.flush()) + self.stops.flush()


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


def answer_budget(params: GenerationParams, context_window: int, prompt_tokens: int) -> int:
    """Tokens the answer may take: max_new_tokens, or what the context has left after the prompt."""
    return max(0, min(params.max_new_tokens, context_window - prompt_tokens))


def decode(
    forward: Callable[[torch.Tensor], torch.Tensor],
    prompt: list[int],
    params: GenerationParams,
    context_window: int,
    eos_ids: frozenset[int],
    tokenizer: TextDecoder,
    result: GenerationResult,
) -> Iterator[str]:
    """The decode loop every local backend shares. `forward` appends ids (1, T) to its KV cache and returns the
    last position's logits (V,)."""
    import torch

    started = time.perf_counter()
    result.prompt_tokens = len(prompt)
    result.finish_reason = "length"
    budget = answer_budget(params, context_window, len(prompt))
    if budget <= 0:
        return
    generator = None
    if params.temperature > 0.0:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(params.seed if params.seed is not None else torch.seed())
    seen = torch.empty(len(prompt) + budget, dtype=torch.long)  # prompt then answer ids, for the penalty
    seen[: len(prompt)] = torch.tensor(prompt)
    length = len(prompt)
    text = AnswerText(tokenizer, params.stop)
    step_input = torch.tensor([prompt], dtype=torch.long)  # (1, T) for the prefill, then (1, 1)
    for _ in range(budget):
        # Entered per step, not around the loop: a generator must not leave inference mode on for its caller.
        with torch.inference_mode():
            logits = forward(step_input).float().cpu()  # (V,)
            token = choose_next_token(logits, seen[:length], params, generator)
        result.timings.setdefault("first_token", time.perf_counter() - started)
        if token in eos_ids:
            result.finish_reason = "eos"
            break
        seen[length] = token
        length += 1
        result.new_tokens += 1
        piece = text.push(token)
        if piece:
            yield piece
        if text.stopped:
            result.finish_reason = "stop"
            break
        step_input = torch.tensor([[token]], dtype=torch.long)
    tail = text.finish()
    if tail:
        yield tail
    if text.stopped:
        result.finish_reason = "stop"
    result.timings["generate"] = time.perf_counter() - started


def eos_token_ids(configured: int | list[int] | None, tokenizer_eos: int | None) -> frozenset[int]:
    """Every id that ends the model's turn: the generation config's and the tokenizer's."""
    ids = {configured} if isinstance(configured, int) else set(configured or [])
    if tokenizer_eos is not None:
        ids.add(int(tokenizer_eos))
    return frozenset(ids)


class LocalBackend:
    """What the in-process backends share: count with the model's own template, stream through `decode`."""

    name: str
    model_name: str
    adapter: str | None
    eos_ids: frozenset[int]
    prompt_format: PromptFormat = "chat"

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids: the model's chat template, or Alpaca/KoAlpaca text when so configured."""
        if self.prompt_format == "chat":
            return self.encode_chat(messages)
        return self.encode_text(text_formats.render(messages, self.prompt_format))

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        raise NotImplementedError

    def encode_text(self, text: str) -> list[int]:
        """Plain prompt text to ids, with the tokenizer's own special tokens (BOS) added."""
        raise NotImplementedError

    def context_window(self) -> int:
        raise NotImplementedError

    def text_decoder(self) -> TextDecoder:
        raise NotImplementedError

    def new_forward(self, max_len: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """A forward function over a fresh KV cache that will hold at most `max_len` positions."""
        raise NotImplementedError

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.encode(messages))

    def stream(
        self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult
    ) -> Iterator[str]:
        started = time.perf_counter()
        prompt = self.encode(messages)
        result.timings["prompt"] = time.perf_counter() - started
        max_len = len(prompt) + answer_budget(params, self.context_window(), len(prompt))
        forward = self.new_forward(max_len)
        window = self.context_window()
        yield from decode(forward, prompt, params, window, self.eos_ids, self.text_decoder(), result)


class TransformersBackend(LocalBackend):
    """Generation with a transformers model on CPU, CUDA or MPS."""

    name = "transformers"

    def __init__(self, loaded: LoadedModel, prompt_format: PromptFormat = "chat") -> None:
        self.loaded = loaded
        self.prompt_format = prompt_format
        self.model_name = loaded.name
        self.adapter = loaded.adapter
        self.eos_ids = eos_token_ids(loaded.model.generation_config.eos_token_id, loaded.tokenizer.eos_token_id)
        # transformers 5 renamed the forward argument that carries the KV cache.
        forward_args = inspect.signature(loaded.model.forward).parameters
        self.cache_arg = "cache" if "cache" in forward_args else "past_key_values"

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
        encoded: Any = self.loaded.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return [int(i) for i in encoded["input_ids"]]

    def encode_text(self, text: str) -> list[int]:
        return [int(i) for i in self.loaded.tokenizer(text, add_special_tokens=True)["input_ids"]]

    def context_window(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 2048))

    def text_decoder(self) -> TextDecoder:
        return self.loaded.tokenizer

    def new_forward(self, max_len: int) -> Callable[[torch.Tensor], torch.Tensor]:
        from transformers import DynamicCache

        model, device, cache = self.loaded.model, self.loaded.device, DynamicCache()

        def forward(ids: torch.Tensor) -> torch.Tensor:
            out = model(input_ids=ids.to(device), use_cache=True, logits_to_keep=1, **{self.cache_arg: cache})
            return out.logits[0, -1]

        return forward
