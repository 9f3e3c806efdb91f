"""The llama.cpp backend on the shipped GGUF: the same prompt ids and the same greedy answers as transformers on the
de-quantised model, with and without a LoRA adapter converted from peft; one answer at a time across threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from bot.config import load_settings
from bot.model import embedded
from bot.model.backend import GenerationParams, GenerationResult, Message, TransformersBackend
from bot.model.factory import cpu_only_torch
from bot.model.llamacpp import LlamaCppBackend, choose_token
from bot.model.loader import LoadedModel, _load_folder
from tests.integration.conftest import use_models
from training.gguf_lora import permute_rows

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

CONVERSATIONS: list[list[Message]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why is the sky blue?"}],
    [
        {"role": "user", "content": "서울은 어느 나라의 수도입니까?"},
        {"role": "assistant", "content": "대한민국입니다. 🇰🇷"},
        {"role": "user", "content": "Ça va?  Tabs\tand\n\nnewlines, 3.14 and 2026."},
    ],
]
QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about rain.",
    "How many legs does a spider have?",
    "Name three primary colors.",
]
FIRST_TOKENS = GenerationParams(max_new_tokens=8, repetition_penalty=1.1)
# The Q4_1 weights are the same numbers on both sides, but llama.cpp quantises activations to 8 bits in its
# matmuls: a near tie (this small model has many) may go the other way, and the rest of that answer with it.
MIN_ANSWERS = len(QUESTIONS) // 2
MIN_TOKEN_SHARE = 0.9
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Models:
    base: LoadedModel  # transformers, float32, the de-quantised GGUF
    adapted: LoadedModel  # the same with a random LoRA merged
    adapter: Path  # the peft adapter folder
    gguf: Path


@pytest.fixture(scope="module")
def models(prepared_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    from peft import LoraConfig, get_peft_model

    folder = prepared_models / embedded.NAME
    cpu = torch.device("cpu")
    base = _load_folder(folder, embedded.NAME, cpu, torch.float32)
    adapted = _load_folder(folder, embedded.NAME, cpu, torch.float32)
    torch.manual_seed(0)
    peft_model = get_peft_model(adapted.model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            # Big enough B that the answers change, small enough that they stay sentences.
            if "lora_A" in name:
                parameter.normal_(0.0, parameter.shape[1] ** -0.5)
            elif "lora_B" in name:
                parameter.normal_(0.0, 0.04)
    adapter = tmp_path_factory.mktemp("adapter") / "random-lora"
    peft_model.save_pretrained(adapter)
    adapted.model = peft_model.merge_and_unload()
    adapted.adapter = adapter.name
    yield Models(base, adapted, adapter, embedded.find_embedded_gguf().gguf)


def answer(backend: object, messages: list[Message], params: GenerationParams = FIRST_TOKENS) -> str:
    return "".join(backend.stream(messages, params, GenerationResult()))  # type: ignore[attr-defined]


@dataclass
class Agreement:
    """llama.cpp vs transformers on QUESTIONS: whole first-8-token answers, and single tokens when both continue
    transformers' answer (so one near tie does not decide the rest of an answer)."""

    answers: int = 0
    tokens: int = 0
    positions: int = 0
    differing: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"first 8 tokens agree on {self.answers}/{len(QUESTIONS)} prompts, next-token choices on "
            f"{self.tokens}/{self.positions} positions; differing answers (llama.cpp, transformers): {self.differing}"
        )


def agreement(ours: LlamaCppBackend, reference: LoadedModel) -> Agreement:
    result = Agreement()
    for question in QUESTIONS:
        messages: list[Message] = [{"role": "user", "content": question}]
        prompt = ours.encode(messages)
        with torch.no_grad():
            generated = reference.model.generate(
                torch.tensor([prompt]),
                max_new_tokens=FIRST_TOKENS.max_new_tokens,
                do_sample=False,
                repetition_penalty=FIRST_TOKENS.repetition_penalty,
                pad_token_id=reference.tokenizer.pad_token_id,
            )
        expected = [int(i) for i in generated[0, len(prompt) :]]
        theirs, mine = reference.tokenizer.decode(expected, skip_special_tokens=True), answer(ours, messages)
        result.answers += mine == theirs
        if mine != theirs:
            result.differing.append((mine, theirs))
        with ours.engine.lock:
            ours.engine.use_adapter(ours.lora)
            ours.engine.prefill(prompt)
            for position, token in enumerate(expected):
                seen = np.unique(np.asarray(prompt + expected[:position]))
                result.tokens += choose_token(ours.engine.logits(), seen, FIRST_TOKENS, None) == token
                result.positions += 1
                ours.engine.step(token)
    return result


def test_prompt_ids_match_transformers(models: Models) -> None:
    ours = LlamaCppBackend.open(models.gguf, embedded.NAME)
    reference = TransformersBackend(models.base)
    for messages in CONVERSATIONS:
        assert ours.encode(messages) == reference.encode(messages)
        assert ours.count_tokens(messages) == reference.count_tokens(messages)


def check_agreement(result: Agreement) -> None:
    print(result)  # the figures, for the record (pytest -s)
    assert result.answers >= MIN_ANSWERS and result.tokens >= MIN_TOKEN_SHARE * result.positions, str(result)


def test_greedy_answers_agree_with_transformers(models: Models) -> None:
    check_agreement(agreement(LlamaCppBackend.open(models.gguf, embedded.NAME), models.base))


def test_greedy_answers_with_the_adapter_agree_with_transformers_and_peft(models: Models) -> None:
    ours = LlamaCppBackend.open(models.gguf, embedded.NAME, models.adapter)
    assert ours.adapter == models.adapter.name
    check_agreement(agreement(ours, models.adapted))
    base = LlamaCppBackend.open(models.gguf, embedded.NAME)
    changed = [
        q
        for q in QUESTIONS
        if answer(ours, [{"role": "user", "content": q}]) != answer(base, [{"role": "user", "content": q}])
    ]
    assert len(changed) >= len(QUESTIONS) // 2, "the adapter must change the answers for this test to mean anything"


def test_adapter_moves_the_logits_as_peft_does(models: Models) -> None:
    """The adapter's effect on the next-token logits, llama.cpp vs transformers: the same direction and size. A
    q/k permutation left out (or applied to the wrong side) breaks this by far."""
    messages: list[Message] = [{"role": "user", "content": "Tell me about the history of Rome."}]
    ids = torch.tensor([TransformersBackend(models.base).encode(messages)])
    with torch.no_grad():
        hf_base = models.base.model(input_ids=ids).logits[0, -1].numpy()
        hf_adapted = models.adapted.model(input_ids=ids).logits[0, -1].numpy()

    def llamacpp_logits(backend: LlamaCppBackend) -> np.ndarray:
        with backend.engine.lock:
            backend.engine.use_adapter(backend.lora)
            backend.engine.prefill(backend.encode(messages))
            return backend.engine.logits().copy()

    cpp_base = llamacpp_logits(LlamaCppBackend.open(models.gguf, embedded.NAME))
    cpp_adapted = llamacpp_logits(LlamaCppBackend.open(models.gguf, embedded.NAME, models.adapter))
    effect, error = hf_adapted - hf_base, cpp_adapted - hf_adapted
    assert np.linalg.norm(effect) > 5 * np.linalg.norm(cpp_base - hf_base)  # the adapter matters here
    assert np.linalg.norm(error) < 0.2 * np.linalg.norm(effect), (np.linalg.norm(error), np.linalg.norm(effect))


def test_shipped_gguf_stores_q_and_k_rows_permuted(models: Models) -> None:
    """What the converter does to lora_B is what llama.cpp's converter did to the model: transformers' weights,
    permuted, are the GGUF's de-quantised tensors."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {t.name: t for t in GGUFReader(models.gguf).tensors}
    config = models.base.model.config
    layer = models.base.model.model.layers[3].self_attn
    for gguf_name, weight, heads in [
        ("blk.3.attn_q.weight", layer.q_proj.weight, config.num_attention_heads),
        ("blk.3.attn_k.weight", layer.k_proj.weight, config.num_key_value_heads),
    ]:
        stored = dequantize(tensors[gguf_name].data, tensors[gguf_name].tensor_type)
        hf = weight.detach().numpy()
        np.testing.assert_allclose(permute_rows(hf, heads), stored, atol=1e-6)
        assert not np.allclose(hf, stored, atol=1e-3)


def test_two_threads_take_turns_on_one_context(models: Models) -> None:
    backend = LlamaCppBackend.open(models.gguf, embedded.NAME)
    messages: list[Message] = [{"role": "user", "content": "Explain how a bicycle works."}]
    params = GenerationParams(max_new_tokens=24, repetition_penalty=1.1)
    alone = answer(backend, messages, params)
    pieces: list[tuple[str, float]] = []
    texts: dict[str, str] = {}

    def run(name: str) -> None:
        out = []
        for piece in backend.stream(messages, params, GenerationResult()):
            pieces.append((name, time.perf_counter()))
            out.append(piece)
        texts[name] = "".join(out)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert texts == {"a": alone, "b": alone}
    order = [name for name, _ in sorted(pieces, key=lambda p: p[1])]
    first = order[0]
    switch = order.index("b" if first == "a" else "a")
    assert set(order[:switch]) == {first} and first not in order[switch:], f"the answers interleaved: {order}"


def test_auto_falls_back_to_native_when_the_gguf_is_corrupt(
    prepared_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.model import factory

    use_models(monkeypatch, prepared_models)
    corrupt = tmp_path / embedded.GGUF_FILE
    corrupt.write_bytes(b"GGUF" + b"\x00" * 256)
    monkeypatch.setattr(factory, "gguf_model", lambda settings: factory.GgufModel(corrupt, embedded.NAME))
    with caplog.at_level(logging.WARNING, logger="bot.model.factory"):
        opened = factory.open_backend(load_settings())
    assert opened.backend.name == "native"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(corrupt) in warnings[0]


def test_the_bot_follows_the_registry_on_one_shared_model(models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from bot.model.factory import open_backend
    from bot.model.swap import SwappableBackend
    from training.gguf_lora import GGUF_ADAPTER_FILE
    from training.registry import AdapterCard, AdapterRegistry

    monkeypatch.setenv("DOMAINBOT_ADAPTER_POLL_SECONDS", "0")
    settings = load_settings()
    messages: list[Message] = [{"role": "user", "content": "How many legs does a spider have?"}]
    bot = open_backend(settings, follow_registry=True).backend
    assert isinstance(bot, SwappableBackend) and (bot.name, bot.adapter) == ("llamacpp", None)
    base_answer = answer(bot, messages)

    registry = AdapterRegistry.in_data_dir(settings.data_dir)
    created = datetime.now(UTC).isoformat()
    registry.add(models.adapter, AdapterCard(name="r1", kind="sft", base_model=embedded.NAME, created_at=created))
    registry.activate("r1")
    assert bot.refresh() is True and bot.adapter == "r1"
    adapted_answer = answer(bot, messages)
    assert adapted_answer == answer(LlamaCppBackend.open(models.gguf, embedded.NAME, models.adapter), messages)
    assert adapted_answer != base_answer
    assert (registry.path("r1") / GGUF_ADAPTER_FILE).is_file()  # converted once, beside the registry's copy

    registry.activate(None)
    assert bot.refresh() is True and answer(bot, messages) == base_answer
    backend = bot.current()
    assert isinstance(backend, LlamaCppBackend)
    assert backend.engine is LlamaCppBackend.open(models.gguf, embedded.NAME).engine  # one model in memory
    bot.close()


def test_a_start_on_llamacpp_does_not_import_torch(tmp_path: Path) -> None:
    """torch costs 1.5 s of a 2 s cold start here; the llama.cpp path on a CPU-only torch build never needs it
    (a GPU build is imported to learn whether its GPU is there)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from bot.config import load_settings\n"
        "from bot.model.factory import open_backend\n"
        "opened = open_backend(load_settings())\n"
        "print(opened.backend.name, 'torch' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "DOMAINBOT_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    # A GPU build of torch has to be imported to learn whether a GPU is there; a CPU-only build never is.
    assert out.stdout.split() == ["llamacpp", str(not cpu_only_torch())], out.stderr


def test_finish_reasons_timings_and_seeded_sampling() -> None:
    backend = LlamaCppBackend.open(embedded.find_embedded_gguf().gguf, embedded.NAME)
    messages: list[Message] = [
        {"role": "system", "content": load_settings().system_prompt},
        {"role": "user", "content": "What is the capital of France?"},
    ]

    def run(params: GenerationParams) -> tuple[str, GenerationResult]:
        result = GenerationResult()
        return "".join(backend.stream(messages, params, result)), result

    text, result = run(GenerationParams(max_new_tokens=64))
    assert "Paris" in text and result.finish_reason == "eos"
    assert result.prompt_tokens == backend.count_tokens(messages) and 0 < result.new_tokens < 64
    assert 0 < result.timings["first_token"] <= result.timings["generate"]

    text, result = run(GenerationParams(max_new_tokens=64, stop=("Paris",)))
    assert "Paris" not in text and result.finish_reason == "stop"

    _, result = run(GenerationParams(max_new_tokens=3))
    assert (result.finish_reason, result.new_tokens) == ("length", 3)

    sampled = GenerationParams(max_new_tokens=16, temperature=1.2, top_p=0.95, seed=7)
    assert run(sampled)[0] == run(sampled)[0]
    assert len({run(GenerationParams(max_new_tokens=16, temperature=1.2, seed=s))[0] for s in range(4)}) > 1


def test_a_stream_left_unfinished_frees_the_context() -> None:
    backend = LlamaCppBackend.open(embedded.find_embedded_gguf().gguf, embedded.NAME)
    messages: list[Message] = [{"role": "user", "content": "Explain how a bicycle works."}]
    params = GenerationParams(max_new_tokens=12)
    expected = answer(backend, messages, params)
    abandoned = backend.stream(messages, params, GenerationResult())
    next(abandoned)
    assert backend.engine.lock.locked()
    abandoned.close()  # what happens when a reader stops reading and drops the stream
    assert not backend.engine.lock.locked()
    assert answer(backend, messages, params) == expected


def test_a_gguf_file_is_a_model() -> None:
    from bot.model.factory import open_backend

    gguf = embedded.find_embedded_gguf().gguf
    opened = open_backend(load_settings().model_copy(update={"model": str(gguf)}))
    assert (opened.backend.name, opened.backend.model_name, opened.path) == ("llamacpp", gguf.stem, str(gguf))
    assert opened.dtype == "Q4_1" and opened.backend.context_window() == 8192


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_a_bad_gguf_is_named_in_one_line(damage: str, tmp_path: Path) -> None:
    from bot.errors import DomainbotError
    from bot.model.factory import open_backend

    bad = tmp_path / "model.gguf"
    if damage == "garbage":
        bad.write_bytes(b"this is not a model")
    elif damage == "truncated":
        with embedded.find_embedded_gguf().gguf.open("rb") as source:
            bad.write_bytes(source.read(1_000_000))  # the header and some tensors, cut off
    settings = load_settings().model_copy(update={"model": str(bad), "backend": "llamacpp"})
    with pytest.raises(DomainbotError, match=f"GGUF model {bad}") as error:
        open_backend(settings)
    assert "\n" not in str(error.value)
