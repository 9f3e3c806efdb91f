"""Generation speed of `domainbot ask`'s path vs bare `model.generate`, same model and prompt, same run.

Both decode greedily with the same repetition penalty, so they produce the same tokens (checked); the figure is
new tokens per second of generation, the median of several alternating rounds. Target ratio: >= 0.95.

    python bench/generation.py [--rounds 3] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bot.chat import ChatSession, generation_params
from bot.config import load_settings
from bot.model.backend import TransformersBackend
from bot.model.factory import open_backend
from bot.model.loader import load_model

QUESTION = "Explain in detail how a bicycle works, part by part."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    settings = load_settings().model_copy(update={"max_new_tokens": args.max_tokens, "temperature": 0.0})
    # What `domainbot ask` uses: llama.cpp on the CPU when installed, else native for Llama models.
    backend = open_backend(settings).backend
    loaded = load_model(settings)  # the same model through transformers, for the bare baseline
    reference = TransformersBackend(loaded)
    params = generation_params(settings)
    prompt_messages = [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": QUESTION}]
    prompt = torch.tensor([reference.encode(prompt_messages)], device=loaded.device)
    assert backend.count_tokens(prompt_messages) == prompt.shape[1], "both paths must see the same prompt"

    ours, bare, texts = [], [], set()
    ChatSession(backend, params, settings.system_prompt, 0).ask("Warm up.")
    for _ in range(args.rounds):
        session = ChatSession(backend, params, settings.system_prompt, settings.history_max_tokens)
        reply = session.ask(QUESTION)
        ours.append(reply.usage["completion_tokens"] / reply.timings["generate"])
        texts.add(reply.text)

        started = time.perf_counter()
        with torch.inference_mode():
            out = loaded.model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=args.max_tokens,
                do_sample=False,
                repetition_penalty=params.repetition_penalty,
                pad_token_id=loaded.tokenizer.pad_token_id or 0,
            )
        elapsed = time.perf_counter() - started
        new = out[0, prompt.shape[1] :]
        eos = set(reference.eos_ids)
        produced = [t for t in new.tolist() if t not in eos]
        bare.append(len(produced) / elapsed)
        texts.add(loaded.tokenizer.decode(produced, skip_special_tokens=True).strip())

    ratio = statistics.median(ours) / statistics.median(bare)
    print(
        f"model {loaded.name} on {loaded.device} ({str(loaded.dtype).removeprefix('torch.')}), "
        f"{reply.usage['completion_tokens']} new tokens a round, {args.rounds} rounds"
    )
    print(f"domainbot ask path : {statistics.median(ours):7.2f} tok/s")
    print(f"bare model.generate: {statistics.median(bare):7.2f} tok/s")
    print(f"ratio              : {ratio:7.3f} (target >= 0.95)")
    print(f"same text on both paths: {len(texts) == 1}" + ("" if len(texts) == 1 else f" {sorted(texts)!r}"))
    print(json.dumps({"ask_tok_s": ours, "generate_tok_s": bare, "ratio": ratio, "same_text": len(texts) == 1}))


if __name__ == "__main__":
    main()
