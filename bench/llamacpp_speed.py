"""The llama.cpp backend on the shipped GGUF: `domainbot ask`'s path vs bare llama-cpp-python, and its start.

1. Tokens per second of `domainbot ask --raw`'s path (a ChatSession on the backend `open_backend` gives for
   DOMAINBOT_BACKEND=llamacpp, timed around the whole `ask`) against bare llama-cpp-python (`Llama(...)` with its
   defaults but the prompt's thread count, so both compute the same numbers; `create_completion` on the same
   prompt ids), both greedy without repetition penalty so they produce the same tokens (checked). Rounds alternate
   (ours, bare, bare, ours, ...) and the ratio is the median of the rounds' ratios: other work on the machine
   moves both sides of a round alike. Without and with a LoRA adapter (a random peft adapter on the model; bare
   llama-cpp-python gets the converted GGUF file as `lora_path`). Target ratio >= 1.0.
2. Time to the first token of a warm bot: further questions to the same ChatSession, from `ask` to the first
   text piece (default settings). Target <= 0.5 s.
3. Cold start to the first token: a new `domainbot ask --raw ... --max-tokens 1` process on a fresh data folder,
   from launch to its first byte on stdout. Target <= 2 s.

    python bench/llamacpp_speed.py [--rounds 8] [--max-tokens 96] [--cold-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.chat import ChatSession, generation_params
from bot.config import Settings, load_settings
from bot.model import embedded
from bot.model.factory import open_backend

QUESTION = "Explain in detail how a bicycle works, part by part."
WARM_QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Name three primary colours.",
    "What does a compiler do?",
    "Why is the sky blue?",
]
REPO = Path(__file__).resolve().parents[1]


def random_adapter(models_dir: Path, out: Path) -> Path:
    """A peft LoRA on every linear layer of the embedded model, random enough to change its answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder, _ = embedded.ensure_embedded_model(models_dir)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.04)
    peft_model.save_pretrained(out)
    return out


def compare_speed(settings: Settings, rounds: int, max_tokens: int) -> dict[str, object]:
    """Median tokens/s of the ask path and of bare llama-cpp-python, and whether their texts agree."""
    from llama_cpp import Llama

    from bot.model.llamacpp import THREADS, LlamaCppBackend, _plain_cpu_buffers
    from training.gguf_lora import gguf_adapter

    backend = open_backend(settings).backend
    assert isinstance(backend, LlamaCppBackend), backend.name
    gguf = backend.engine.path
    lora = None if settings.adapter is None else str(gguf_adapter(settings.adapter, gguf))
    with _plain_cpu_buffers():  # the same weight buffers as the backend's, so that only the wrapper differs
        bare = Llama(str(gguf), lora_path=lora, n_threads_batch=THREADS, verbose=False)
    params = generation_params(settings)
    messages = [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": QUESTION}]
    prompt = backend.encode(messages)  # type: ignore[arg-type]

    def ask_path() -> tuple[float, str, int]:
        session = ChatSession(backend, params, settings.system_prompt, settings.history_max_tokens)
        started = time.perf_counter()
        reply = session.ask(QUESTION)
        tokens = reply.usage["completion_tokens"]
        return tokens / (time.perf_counter() - started), reply.text, tokens

    def bare_path() -> tuple[float, str, int]:
        started = time.perf_counter()
        completion: Any = bare.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0)
        tokens = completion["usage"]["completion_tokens"]
        return tokens / (time.perf_counter() - started), completion["choices"][0]["text"].strip(), tokens

    ask_path()
    bare_path()
    ours, theirs, texts = [], [], set()
    for round_ in range(rounds):
        first, second = (ask_path, bare_path) if round_ % 2 == 0 else (bare_path, ask_path)
        results = {first: first(), second: second()}
        ours.append(results[ask_path][0])
        theirs.append(results[bare_path][0])
        texts.update({results[ask_path][1], results[bare_path][1]})
    bare.close()
    return {
        "ask_tok_s": statistics.median(ours),
        "bare_tok_s": statistics.median(theirs),
        "ratio": statistics.median(a / b for a, b in zip(ours, theirs, strict=True)),
        "new_tokens": results[ask_path][2],
        "same_text": len(texts) == 1,
    }


def warm_first_token(settings: Settings) -> list[float]:
    """Seconds from `ask` to the first text piece, per question, on a bot that has answered once already."""
    session = ChatSession.from_settings(settings)
    session.ask("Hello!")
    waits = []
    pieces: list[float] = []
    for question in WARM_QUESTIONS:
        pieces.clear()
        started = time.perf_counter()
        session.ask(question, on_piece=lambda _piece: pieces.append(time.perf_counter()))
        waits.append(pieces[0] - started)
    return waits


def cold_start(runs: int) -> list[float]:
    """Seconds from launching `domainbot ask --raw` in a new process on an empty data folder to its first output."""
    waits = []
    for _ in range(runs):
        data_dir = tempfile.mkdtemp(prefix="domainbot-bench-")
        env = {**os.environ, "DOMAINBOT_DATA_DIR": data_dir, "DOMAINBOT_MODEL": "embedded"}
        command = [sys.executable, "-m", "bot.cli", "ask", WARM_QUESTIONS[0], "--raw", "--max-tokens", "1"]
        try:
            started = time.perf_counter()
            with subprocess.Popen(
                command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            ) as proc:
                assert proc.stdout is not None
                proc.stdout.read(1)
                waits.append(time.perf_counter() - started)
                proc.stdout.read()
            if proc.returncode != 0:
                raise SystemExit(f"domainbot ask failed with exit code {proc.returncode}")
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()

    base = load_settings().model_copy(update={"backend": "llamacpp", "model": "embedded"})
    speed_settings = base.model_copy(
        update={"max_new_tokens": args.max_tokens, "temperature": 0.0, "repetition_penalty": 1.0}
    )
    work = Path(tempfile.mkdtemp(prefix="domainbot-bench-"))
    try:
        adapter = random_adapter(base.models_dir, work / "random-lora")
        speed = {
            "base": compare_speed(speed_settings, args.rounds, args.max_tokens),
            "adapter": compare_speed(
                speed_settings.model_copy(update={"adapter": adapter}), args.rounds, args.max_tokens
            ),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    warm = warm_first_token(base.model_copy(update={"data_dir": Path(tempfile.mkdtemp(prefix="domainbot-bench-"))}))
    cold = cold_start(args.cold_runs)

    print(f"llama.cpp backend, {embedded.GGUF_FILE}, {args.rounds} rounds of up to {args.max_tokens} new tokens")
    for name, figures in speed.items():
        print(
            f"{name:>8}: ask path {figures['ask_tok_s']:7.2f} tok/s, "
            f"bare llama-cpp-python {figures['bare_tok_s']:7.2f} tok/s, "
            f"ratio {figures['ratio']:.3f} (target >= 1.0), same text: {figures['same_text']}"
        )
    print(
        f"warm bot, time to first token: median {statistics.median(warm):.3f} s, "
        f"max {max(warm):.3f} s (target <= 0.5 s)"
    )
    print(f"cold start to first token: median {statistics.median(cold):.2f} s, max {max(cold):.2f} s (target <= 2 s)")
    print(json.dumps({"speed": speed, "warm_first_token_s": warm, "cold_first_token_s": cold}))


if __name__ == "__main__":
    main()
