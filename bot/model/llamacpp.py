"""The llama.cpp backend: a GGUF model through llama-cpp-python on the CPU, with LoRA adapters.

Prompts are rendered with the chat template stored in the GGUF, compiled as transformers compiles it, and
tokenized by llama.cpp with special tokens parsed: the ids are the ones the transformers backend feeds its model
(tests/integration/test_llamacpp.py checks). Tokens are chosen here from llama.cpp's logits by the same rules as
the other backends (`choose_token` mirrors `backend.choose_next_token`), so a greedy answer with a repetition
penalty means the same thing on every backend.

One model and one context (`LlamaCppEngine`) serve every backend opened on the same GGUF file; a backend per
adapter only adds that adapter's LoRA tensors (converted from peft by training/gguf_lora.py) and sets it on the
context for its own answers. A context is not thread-safe, so an answer holds the engine's lock from its first
token to its last: a second conversation waits for it, never interleaves with it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bot.errors import DomainbotError
from bot.model import text_formats
from bot.model.backend import (
    AnswerText,
    GenerationParams,
    GenerationResult,
    Message,
    answer_budget,
)
from bot.model.chat_format import compile_template, render_template
from bot.model.loader import first_line, no_chat_template
from bot.model.text_formats import PromptFormat

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

INSTALL_HINT = (
    'Install it with `pip install -e ".[llamacpp]"` (it compiles llama.cpp: about 12 minutes on 2 cores), '
    "or set DOMAINBOT_BACKEND=auto."
)
# The KV cache is allocated for the whole context at load; models trained for very long contexts get this many.
MAX_CONTEXT = 8192
# llama-cpp-python's default for decoding (one thread per physical core, taking two hardware threads per core), for
# prompts too: its default there, every hardware thread, makes llama.cpp's threads wait on each other whenever the
# machine is busy with anything else (prompts ran 20x slower on a loaded 2-core machine).
THREADS = max(1, (os.cpu_count() or 2) // 2)
# Longest text one token may stand for (llama.cpp asks for a bigger buffer when it is not enough).
PIECE_BUFFER = 64


def llamacpp_installed() -> bool:
    """Whether llama-cpp-python is importable, without loading its library."""
    return importlib.util.find_spec("llama_cpp") is not None


def require_llamacpp() -> None:
    if not llamacpp_installed():
        raise DomainbotError(
            f"The llama.cpp backend needs the llama-cpp-python package, which is not installed. {INSTALL_HINT}"
        )


_defaults_lock = threading.Lock()


@contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """Load weights into plain CPU buffers, not llama.cpp's "extra" ones (AMX tiles, repacked layouts).

    A build compiled for the machine it was built on uses AMX where the CPU lists it, and some virtual
    machines list AMX without letting a program use it: the first matrix product then kills the process
    with an illegal instruction, where no Python code can catch it. What the repacked layouts would have
    saved on a machine where AMX works was not measured (none was at hand). llama-cpp-python's `Llama` takes no
    argument for this, so its model defaults are swapped for the length of one load."""
    from llama_cpp import llama as high_level

    low_level = high_level.llama_cpp
    original = low_level.llama_model_default_params

    def defaults() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):  # llama-cpp-python 0.3.36 and newer
            params.use_extra_bufts = False
        return params

    with _defaults_lock:
        low_level.llama_model_default_params = defaults
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


class LlamaCppEngine:
    """One llama.cpp model and context, and the lock that makes one answer at a time use them."""

    _shared: ClassVar[weakref.WeakValueDictionary[Path, LlamaCppEngine]] = weakref.WeakValueDictionary()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, gguf: Path) -> None:
        import llama_cpp

        if not gguf.is_file():
            raise DomainbotError(f"GGUF model {gguf} not found. Point DOMAINBOT_MODEL at a .gguf model file.")
        try:
            # Read into memory, not mapped: decoding measured 8% faster here (18% with a LoRA adapter set) in
            # paired rounds, likely because anonymous memory gets huge pages; reading costs 0.05 s of the load.
            with _plain_cpu_buffers():
                self.llama: Llama = llama_cpp.Llama(
                    str(gguf),
                    n_ctx=MAX_CONTEXT,
                    n_threads=THREADS,
                    n_threads_batch=THREADS,
                    use_mmap=False,
                    verbose=False,
                )
        except Exception as exc:  # llama-cpp-python raises ValueError or RuntimeError, by version
            raise DomainbotError(
                f"Could not load the GGUF model {gguf}: {first_line(exc)}. Expected a complete llama.cpp GGUF model "
                "file; download or copy it again."
            ) from exc
        self.path = gguf
        self.lock = threading.Lock()
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.n_vocab = self.llama.n_vocab()
        # What the model was trained for, when that is less than the cache holds.
        self.n_ctx = min(self.llama.n_ctx(), llama_cpp.llama_model_n_ctx_train(self.llama.model))
        self.metadata: dict[str, str] = dict(self.llama.metadata)
        # The adapter the context applies now; the KV cache holds keys and values computed with it.
        self.active: LoraHandle | None = None
        # Adapters whose backends are gone, freed by the next answer (under the lock, and never the active one).
        self.retired: list[Any] = []
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._logits_address: int | None = None
        self._logits_view = np.zeros(0, dtype=np.float32)

    @classmethod
    def shared(cls, gguf: Path) -> LlamaCppEngine:
        """The engine of `gguf` that live backends use, or a new one: one model in memory per file."""
        key = gguf.resolve()
        with cls._shared_lock:
            engine = cls._shared.get(key)
            if engine is None:
                engine = cls(gguf)
                cls._shared[key] = engine
            return engine

    @property
    def quantization(self) -> str:
        """How the weights are stored, e.g. 'Q4_1' or 'F16' (GGUF's file type)."""
        from gguf import LlamaFileType

        try:
            return LlamaFileType(int(self.metadata["general.file_type"])).name.removeprefix("MOSTLY_")
        except (KeyError, ValueError):
            return "unknown"

    # --- tokens ---------------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        # Special tokens written in the text (the template's <|im_start|>) are parsed as such, as transformers does.
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def token_text(self, token_id: str | None) -> str | None:
        if token_id is None or int(token_id) < 0:
            return None
        return self.piece(int(token_id), special=True).decode("utf-8", errors="replace")

    def piece(self, token: int, special: bool) -> bytes:
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is None:
            import llama_cpp

            size = PIECE_BUFFER
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, size, 0, special)
                if n >= 0:
                    break
                size = -n
            cached = self._pieces[key] = buffer.raw[:n]
        return cached

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # --- adapters -------------------------------------------------------------------------------------------

    def load_adapter(self, gguf_lora: Path) -> LoraHandle:
        import llama_cpp

        pointer = llama_cpp.llama_adapter_lora_init(self.llama.model, str(gguf_lora).encode("utf-8"))
        if not pointer:
            raise DomainbotError(
                f"llama.cpp could not load the LoRA adapter {gguf_lora} on {self.path.name} (its tensors do not "
                "match the model). Delete the file to convert the adapter again."
            )
        return LoraHandle(self, pointer)

    def use_adapter(self, adapter: LoraHandle | None) -> None:
        """Set `adapter` (None: the base model) on the context; call with the lock held."""
        import llama_cpp

        if adapter is not self.active:
            if adapter is None:
                failed = llama_cpp.llama_set_adapters_lora(self.llama.ctx, None, 0, None)
            else:
                pointers = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.pointer)
                scales = (ctypes.c_float * 1)(1.0)
                failed = llama_cpp.llama_set_adapters_lora(self.llama.ctx, pointers, 1, scales)
            if failed:
                raise DomainbotError(f"llama.cpp could not switch the LoRA adapter on {self.path.name}.")
            self.active = adapter
            self.llama.reset()  # the cached keys and values were computed with the other weights
        while self.retired:
            llama_cpp.llama_adapter_lora_free(self.retired.pop())

    # --- decoding -------------------------------------------------------------------------------------------

    def prefill(self, prompt: list[int]) -> None:
        """Bring the KV cache to `prompt`, reusing the longest prefix it already holds (a conversation's earlier
        turns, the system prompt); at least the last token is evaluated, for its logits. Call with the lock held."""
        held = self.llama.input_ids[: self.llama.n_tokens]
        limit = min(len(held), len(prompt) - 1)
        mismatch = np.flatnonzero(held[:limit] != np.asarray(prompt[:limit], dtype=held.dtype))
        reuse = int(mismatch[0]) if mismatch.size else limit
        self.llama.n_tokens = reuse
        self.llama.eval(prompt[reuse:])

    def step(self, token: int) -> None:
        self.llama.eval([token])

    def logits(self) -> np.ndarray:
        """The last evaluated position's logits, (V,) float32: a view into llama.cpp's buffer, valid until the next
        evaluation."""
        import llama_cpp

        address = ctypes.cast(llama_cpp.llama_get_logits_ith(self.llama.ctx, -1), ctypes.c_void_p).value
        # The buffer stays where it is from token to token; making a numpy view costs more than choosing the token.
        if address != self._logits_address:
            buffer = (ctypes.c_float * self.n_vocab).from_address(address or 0)
            self._logits_view, self._logits_address = np.frombuffer(memoryview(buffer), dtype=np.float32), address
        return self._logits_view


class LoraHandle:
    """A LoRA adapter loaded into an engine's model; retired (freed by the engine) once unreachable."""

    def __init__(self, engine: LlamaCppEngine, pointer: Any) -> None:
        self.pointer = pointer
        # Handed to the engine rather than freed here: the context may still be set to it, and only an answer holding
        # the engine's lock may change that. A model freed first frees its adapters itself.
        weakref.finalize(self, engine.retired.append, pointer)


class LlamaTextDecoder:
    """Token ids to text through llama.cpp's vocabulary, for `IncrementalDecoder`."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine

    def decode(self, ids: list[int], /, skip_special_tokens: bool = True) -> str:
        data = b"".join(self.engine.piece(i, special=not skip_special_tokens) for i in ids)
        return data.decode("utf-8", errors="replace")


def choose_token(
    logits: np.ndarray, seen: np.ndarray, params: GenerationParams, rng: np.random.Generator | None
) -> int:
    """`backend.choose_next_token` in numpy: repetition penalty on the seen ids, then greedy or temperature +
    top-p. `logits` (V,) is not modified."""
    if params.repetition_penalty != 1.0 and seen.size:
        logits = logits.astype(np.float32, copy=True)
        scores = logits[seen]
        logits[seen] = np.where(scores > 0, scores / params.repetition_penalty, scores * params.repetition_penalty)
    if params.temperature == 0.0 or rng is None:
        return int(np.argmax(logits))
    scaled = logits / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        # Keep the smallest prefix whose mass reaches top_p (always at least the most likely token).
        sorted_probs[np.cumsum(sorted_probs) - sorted_probs >= params.top_p] = 0.0
        probs = np.zeros_like(probs)
        probs[order] = sorted_probs
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


class LlamaCppBackend:
    """Generation with llama.cpp on the CPU: a GGUF model, optionally with a LoRA adapter on top."""

    name = "llamacpp"

    def __init__(
        self,
        engine: LlamaCppEngine,
        model_name: str,
        adapter: LoraHandle | None = None,
        adapter_name: str | None = None,
        prompt_format: PromptFormat = "chat",
    ) -> None:
        self.engine = engine
        self.model_name = model_name
        self.lora = adapter
        self.adapter = adapter_name
        self.prompt_format = prompt_format
        template = engine.metadata.get("tokenizer.chat_template")
        if prompt_format == "chat" and not template:
            raise no_chat_template(model_name)
        self.template = compile_template(template) if template else None
        special_ids = {
            "bos_token": engine.metadata.get("tokenizer.ggml.bos_token_id"),
            "eos_token": engine.metadata.get("tokenizer.ggml.eos_token_id"),
            "unk_token": engine.metadata.get("tokenizer.ggml.unknown_token_id"),
            "pad_token": engine.metadata.get("tokenizer.ggml.padding_token_id"),
        }
        self.special_tokens = {
            name: text for name, token_id in special_ids.items() if (text := engine.token_text(token_id)) is not None
        }

    @classmethod
    def open(
        cls, gguf: Path, model_name: str, adapter: Path | None = None, prompt_format: PromptFormat = "chat"
    ) -> LlamaCppBackend:
        """A backend on the shared engine of `gguf`, with the peft adapter folder `adapter` converted and loaded."""
        from training.gguf_lora import gguf_adapter

        engine = LlamaCppEngine.shared(gguf)
        if adapter is None:
            return cls(engine, model_name, prompt_format=prompt_format)
        handle = engine.load_adapter(gguf_adapter(adapter, gguf))
        return cls(engine, model_name, handle, adapter.name, prompt_format)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        if self.prompt_format == "chat":
            return self.engine.tokenize(render_template(self.template, messages, self.special_tokens), False)
        return self.engine.tokenize(text_formats.render(messages, self.prompt_format), True)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.encode(messages))

    def context_window(self) -> int:
        return self.engine.n_ctx

    def stream(self, messages: Sequence[Message], params: GenerationParams, result: GenerationResult) -> Iterator[str]:
        started = time.perf_counter()
        prompt = self.encode(messages)
        result.timings["prompt"] = time.perf_counter() - started
        result.prompt_tokens = len(prompt)
        result.finish_reason = "length"
        budget = answer_budget(params, self.context_window(), len(prompt))
        if budget <= 0:
            return
        started = time.perf_counter()
        # Held until the answer ends (or its reader closes the stream): the context serves one answer at a time.
        with self.engine.lock:
            yield from self._decode(prompt, budget, params, result, started)
        result.timings["generate"] = time.perf_counter() - started

    def _decode(
        self, prompt: list[int], budget: int, params: GenerationParams, result: GenerationResult, started: float
    ) -> Iterator[str]:
        engine = self.engine
        engine.use_adapter(self.lora)
        engine.prefill(prompt)
        rng = np.random.default_rng(params.seed) if params.temperature > 0.0 else None
        seen = np.unique(np.asarray(prompt))  # prompt and answer ids, for the repetition penalty
        is_seen = np.zeros(engine.n_vocab, dtype=bool)
        is_seen[seen] = True
        text = AnswerText(LlamaTextDecoder(engine), params.stop)
        token: int | None = None
        for _ in range(budget):
            if token is not None:  # the previous answer token; the prompt's last one was evaluated by prefill
                engine.step(token)
            token = choose_token(engine.logits(), seen, params, rng)
            result.timings.setdefault("first_token", time.perf_counter() - started)
            if engine.is_end(token):
                result.finish_reason = "eos"
                break
            if not is_seen[token]:
                is_seen[token] = True
                seen = np.append(seen, token)
            result.new_tokens += 1
            piece = text.push(token)
            if piece:
                yield piece
            if text.stopped:
                result.finish_reason = "stop"
                break
        tail = text.finish()
        if tail:
            yield tail
        if text.stopped:
            result.finish_reason = "stop"
