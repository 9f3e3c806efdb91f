"""Concurrent chats: aggregate tokens/s of many conversations decoded together (continuous batching) vs one at a time.

The same conversations are answered three ways: by plain `model.generate` (batch 1, a reference for the decode
speed of one answer), one at a time through the transformers backend, and all at once through the batching
backend (`DOMAINBOT_MAX_BATCH` slots: by default as many as there are conversations). Every answer runs to
exactly --new-tokens (the end-of-turn token is ignored), so each side generates the same number of tokens;
decoding is greedy, so the batched answers are checked against the one-at-a-time ones.

    python bench/concurrent_chats.py [--chats 8 32] [--new-tokens 64] [--baseline-chats 4] [--rounds 2]
    python bench/concurrent_chats.py --shape llama1b --device cuda [--chats 16] [--new-tokens 128]

`--shape model` (default) runs the configured model (the embedded SmolLM2-135M-Instruct) with its chat template.
`--shape llama1b` builds a LLaMA with random weights in a 1B shape (hidden 2048, 16 layers, 32 heads, 8 key-value
heads, MLP 8192, vocabulary 32,000: Llama-3.2-1B / TinyLlama-like) in bfloat16 on the device, with prompts of
random token ids (no tokenizer or weights needed: only shapes and lengths matter for speed). `--shape tiny` is
the same with a toy shape, to check the script quickly on a CPU. The one-at-a-time side answers
--baseline-chats conversations: its rate does not depend on how many there are.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from bot.model.backend import GenerationParams, GenerationResult, Message, TransformersBackend
from bot.model.batching import BatchingBackend
from bot.model.loader import LoadedModel

QUESTIONS = [
    "Explain in detail how a bicycle works, part by part.",
    "What should I pack for a week of hiking in the mountains?",
    "Write a short story about a lighthouse keeper and a storm.",
    "How do vaccines train the immune system?",
    "Compare renting and buying a home: what matters most?",
    "Describe the water cycle to a ten-year-old.",
    "What are good habits for writing maintainable code?",
    "Why is the sky blue, and why are sunsets red?",
]
# Random-weight shapes: a LLaMA of about 1B parameters, and a toy one for a quick run on a CPU.
SHAPES: dict[str, dict[str, Any]] = {
    "llama1b": {
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 512,
        "max_position_embeddings": 1024,
    },
}


@dataclass
class Run:
    """One side of the comparison: answers, tokens generated, and the wall-clock seconds they took."""

    label: str
    texts: list[str]
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


class SyntheticTokenizer:
    """Prompts of random token ids, and token ids written back as text: enough for a random-weight model."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f" {i}" for i in ids)


class SyntheticBackend(TransformersBackend):
    """The transformers backend with a conversation's prompt made of seeded random ids (lengths vary by prompt)."""

    def __init__(self, loaded: LoadedModel, prompt_tokens: int) -> None:
        super().__init__(loaded)
        self.prompt_tokens = prompt_tokens

    def encode(self, messages: Sequence[Message]) -> list[int]:
        rng = random.Random(messages[-1]["content"])
        length = rng.randint(self.prompt_tokens // 2, self.prompt_tokens * 3 // 2)
        return [rng.randrange(self.loaded.model.config.vocab_size) for _ in range(length)]


def conversation(index: int) -> list[Message]:
    return [{"role": "user", "content": f"{QUESTIONS[index % len(QUESTIONS)]} (conversation {index + 1})"}]


def build_random_llama(shape: dict[str, Any], device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**shape, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):  # initialising a billion weights is far quicker on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.eos_token_id = None
    name = f"random LLaMA {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B"
    return LoadedModel(model, cast(Any, SyntheticTokenizer()), name, Path("."), device, dtype)


def open_model(args: argparse.Namespace) -> tuple[TransformersBackend, LoadedModel]:
    """The backend answering one at a time, with the end-of-turn token ignored so every answer has full length."""
    if args.shape == "model":
        from bot.config import load_settings
        from bot.model.loader import load_model

        update = {"device": args.device or "auto", **({"dtype": args.dtype} if args.dtype else {})}
        loaded = load_model(load_settings().model_copy(update=update))
        backend = TransformersBackend(loaded)
    else:
        from bot.model.device import select_device

        device = select_device(args.device or "auto")
        dtype = (
            getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
        )
        loaded = build_random_llama(SHAPES[args.shape], device, dtype)
        backend = SyntheticBackend(loaded, args.prompt_tokens)
    backend.eos_ids = frozenset()
    return backend, loaded


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest(runs: Iterable[Run]) -> Run:
    return max(runs, key=lambda run: run.tokens_per_second)


def answer_one_at_a_time(backend: Any, chats: int, params: GenerationParams, label: str) -> Run:
    texts, tokens = [], 0
    started = time.perf_counter()
    for index in range(chats):
        result = GenerationResult()
        texts.append("".join(backend.stream(conversation(index), params, result)))
        tokens += result.new_tokens
    return Run(label, texts, tokens, time.perf_counter() - started)


def answer_concurrently(backend: BatchingBackend, chats: int, params: GenerationParams) -> Run:
    """Every conversation asks at once, from its own thread, as chats on a busy bot would."""
    texts, counts, errors = [""] * chats, [0] * chats, []
    gate = threading.Barrier(chats + 1)

    def chat(index: int) -> None:
        result = GenerationResult()
        gate.wait()
        try:
            texts[index] = "".join(backend.stream(conversation(index), params, result))
        except Exception as exc:  # reported after the run: a failed chat must not look like a fast one
            errors.append(exc)
        counts[index] = result.new_tokens

    threads = [threading.Thread(target=chat, args=(index,)) for index in range(chats)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {chats} concurrent chats failed; the first: {errors[0]!r}")
    return Run(f"{chats} concurrent (batch {backend.max_batch})", texts, sum(counts), seconds)


def plain_generate(loaded: LoadedModel, backend: TransformersBackend, new_tokens: int, penalty: float) -> Run:
    """`model.generate` at batch 1 on the first conversation: the reference decode speed of one answer."""
    prompt = torch.tensor([backend.encode(conversation(0))], device=loaded.device)
    synchronize(loaded.device)
    started = time.perf_counter()
    model: Any = loaded.model
    with torch.inference_mode():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # no early end-of-turn: the same length as the other sides
            do_sample=False,
            repetition_penalty=penalty,
            pad_token_id=0,
        )
    synchronize(loaded.device)
    seconds = time.perf_counter() - started
    new = out[0, prompt.shape[1] :].tolist()
    return Run(
        "model.generate, batch 1", [str(loaded.tokenizer.decode(new, skip_special_tokens=True))], len(new), seconds
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("model", *SHAPES), default="model")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the configured device, or auto).")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    parser.add_argument("--chats", type=int, nargs="+", default=None, help="Concurrent conversations per run.")
    parser.add_argument("--max-batch", type=int, default=None, help="Batch slots (default: as many as the chats).")
    parser.add_argument("--new-tokens", type=int, default=None, help="Tokens each answer generates.")
    parser.add_argument("--baseline-chats", type=int, default=4, help="Conversations answered one at a time.")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="Mean prompt length of the random shapes.")
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each side; the fastest counts.")
    args = parser.parse_args(argv)
    chats = args.chats or ([16] if args.shape == "llama1b" else [8, 32])
    new_tokens = args.new_tokens or (128 if args.shape == "llama1b" else 64)
    params = GenerationParams(max_new_tokens=new_tokens, repetition_penalty=args.repetition_penalty)

    backend, loaded = open_model(args)
    device = loaded.device
    rounds = range(args.rounds)
    # Every side runs --rounds times and keeps its fastest round: the first round of a fresh process pays for
    # paging the weights in and for the kernels picked for each new shape (on CPUs, per cache length and batch).
    generate = fastest(plain_generate(loaded, backend, new_tokens, args.repetition_penalty) for _ in rounds)
    label = "one at a time (transformers backend)"
    alone = fastest(answer_one_at_a_time(backend, args.baseline_chats, params, label) for _ in rounds)
    single = BatchingBackend(backend, 1)
    batched_one = fastest(answer_one_at_a_time(single, 1, params, "batching backend, one chat") for _ in rounds)
    single.close()
    runs = [generate, alone, batched_one]
    same = []
    for count in chats:
        batching = BatchingBackend(backend, args.max_batch or count, max_waiting=max(count, 1))
        run = fastest(answer_concurrently(batching, count, params) for _ in rounds)
        batching.close()
        runs.append(run)
        shared = min(count, len(alone.texts))
        same.append(sum(a == b for a, b in zip(run.texts[:shared], alone.texts[:shared], strict=True)))

    dtype = str(loaded.dtype).removeprefix("torch.")
    print(f"model {loaded.name} on {device} ({dtype}), {new_tokens} new tokens an answer")
    # On a shared machine the single-conversation figures swing from run to run; the fastest of the three is the
    # conservative baseline for what batching gains.
    best_single = max(generate.tokens_per_second, alone.tokens_per_second, batched_one.tokens_per_second)
    for run in runs:
        ratio = run.tokens_per_second / alone.tokens_per_second
        rate, gain = run.tokens_per_second, run.tokens_per_second / best_single
        print(
            f"{run.label:<40} {run.tokens:6d} tokens {run.seconds:8.2f} s {rate:9.1f} tok/s  x{ratio:.2f}  "
            f"x{gain:.2f} of best single"
        )
    print("(x: aggregate tokens/s over the transformers backend answering one conversation at a time, and over the")
    print(" fastest of the three single-conversation figures)")
    compared = [min(count, len(alone.texts)) for count in chats]
    equal = ", ".join(f"{s}/{c}" for s, c in zip(same, compared, strict=True))
    print(f"batched answers equal to one-at-a-time answers: {equal}")
    summary = {
        "model": loaded.name,
        "device": str(device),
        "dtype": dtype,
        "new_tokens": new_tokens,
        "tok_s": {run.label: round(run.tokens_per_second, 2) for run in runs},
        "tokens": {run.label: run.tokens for run in runs},
        "ratio_vs_one_at_a_time": {
            run.label: round(run.tokens_per_second / alone.tokens_per_second, 3) for run in runs
        },
        "ratio_vs_best_single": {run.label: round(run.tokens_per_second / best_single, 3) for run in runs},
        "ratio_vs_generate": {run.label: round(run.tokens_per_second / generate.tokens_per_second, 3) for run in runs},
        "same_as_alone": dict(zip((str(c) for c in chats), same, strict=True)),
        "compared": dict(zip((str(c) for c in chats), compared, strict=True)),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
