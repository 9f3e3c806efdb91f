"""Helpers the tests share: a tiny model built from a config, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `domainbot ARGS` in this process; return the exit code, and what it wrote to stdout and stderr."""
    capsys.readouterr()  # drop what fixtures printed before (e.g. model-loading progress bars)
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "domainbot answers questions about one domain, and learns from ratings.",
    "한국어 문장도 바이트 단위로 나뉩니다. 서울은 한국의 수도입니다.",
    "Numbers like 42, 3.14 and 2026 appear in answers too.",
]


def build_tiny_model(folder: Path, chat_template: str | None = TINY_CHAT_TEMPLATE, hidden_size: int = 16) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained here: no download, loads like any model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(TINY_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_adapter(base_dir: Path, out: Path, **lora: Any) -> Any:
    """Save a LoRA adapter with non-zero weights; return the adapted model's logits on a fixed input."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    options = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False, **lora}
    config = LoraConfig(**options)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(out)
    with torch.no_grad():
        return peft_model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
