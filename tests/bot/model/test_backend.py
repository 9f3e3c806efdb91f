from types import SimpleNamespace
from typing import Any

import pytest
import torch

from bot.model.backend import (
    GenerationParams,
    GenerationResult,
    IncrementalDecoder,
    TransformersBackend,
    choose_next_token,
)
from bot.model.loader import LoadedModel, load_model

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture()
def backend(tiny_settings) -> TransformersBackend:
    return TransformersBackend(load_model(tiny_settings))


def generate_reference(backend: TransformersBackend, **kwargs: Any) -> str:
    prompt = torch.tensor([backend.encode(MESSAGES)])
    out = backend.loaded.model.generate(
        prompt, attention_mask=torch.ones_like(prompt), do_sample=False, pad_token_id=0, **kwargs
    )
    return backend.loaded.tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_stream_matches_model_generate(backend: TransformersBackend, penalty: float) -> None:
    result = GenerationResult()
    params = GenerationParams(max_new_tokens=16, repetition_penalty=penalty)
    text = "".join(backend.stream(MESSAGES, params, result))
    assert text == generate_reference(backend, max_new_tokens=16, repetition_penalty=penalty)
    assert result.prompt_tokens == len(backend.encode(MESSAGES))
    assert result.timings["first_token"] <= result.timings["generate"]


def test_max_new_tokens_is_respected(backend: TransformersBackend) -> None:
    result = GenerationResult()
    list(backend.stream(MESSAGES, GenerationParams(max_new_tokens=3), result))
    assert result.new_tokens <= 3
    assert result.finish_reason in ("length", "eos")
    if result.finish_reason == "length":
        assert result.new_tokens == 3


def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    def sample(seed: int) -> str:
        params = GenerationParams(max_new_tokens=24, temperature=1.5, top_p=1.0, seed=seed)
        return "".join(backend.stream(MESSAGES, params, GenerationResult()))

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_prompt_that_fills_the_context_generates_nothing(backend: TransformersBackend) -> None:
    long_messages = [{"role": "user", "content": "Paris " * 400}]
    result = GenerationResult()
    assert list(backend.stream(long_messages, GenerationParams(max_new_tokens=8), result)) == []
    assert result.finish_reason == "length"


class ScriptedLM(torch.nn.Module):
    """Emits the scripted token ids in order, one per forward call, then repeats the last."""

    def __init__(self, script: list[int], vocab: int) -> None:
        super().__init__()
        self.script, self.vocab, self.calls = script, vocab, 0
        self.generation_config = SimpleNamespace(eos_token_id=[2, 3])
        self.config = SimpleNamespace(max_position_embeddings=512)

    def forward(
        self, input_ids: torch.Tensor, cache: Any = None, use_cache: bool = True, logits_to_keep: int = 0
    ) -> Any:
        token = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        logits = torch.full((1, 1, self.vocab), -10.0)
        logits[0, 0, token] = 10.0
        return SimpleNamespace(logits=logits)


def scripted_backend(tiny_settings, script: list[int]) -> TransformersBackend:
    real = load_model(tiny_settings)
    lm = ScriptedLM(script, vocab=len(real.tokenizer))
    loaded = LoadedModel(
        model=lm,
        tokenizer=real.tokenizer,
        name="scripted",
        path=real.path,  # type: ignore[arg-type]
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    return TransformersBackend(loaded)


def test_stops_on_any_eos_token(tiny_settings) -> None:
    backend = scripted_backend(tiny_settings, [40, 41, 3, 42])
    result = GenerationResult()
    text = "".join(backend.stream(MESSAGES, GenerationParams(max_new_tokens=10), result))
    assert result.finish_reason == "eos"
    assert result.new_tokens == 2
    assert text == backend.loaded.tokenizer.decode([40, 41])
    assert backend.loaded.model.calls == 3  # type: ignore[attr-defined]


def test_stream_pieces_never_split_characters(tiny_settings) -> None:
    tokenizer = load_model(tiny_settings).tokenizer
    text = "서울은 한국의 수도입니다 😀 déjà vu"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # byte-level: characters span several tokens
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.tensor([5.0, 1.0, 0.5, 0.0])
    generator = torch.Generator().manual_seed(0)
    params = GenerationParams(temperature=1.0, top_p=0.5)
    picks = {
        choose_next_token(logits.clone(), torch.tensor([], dtype=torch.long), params, generator) for _ in range(50)
    }
    assert picks == {0}


def test_repetition_penalty_lowers_seen_tokens() -> None:
    logits = torch.tensor([2.0, 1.9, -1.0])
    params = GenerationParams(repetition_penalty=1.5)
    assert choose_next_token(logits.clone(), torch.tensor([0]), params, None) == 1
    assert choose_next_token(logits.clone(), torch.tensor([], dtype=torch.long), params, None) == 0
