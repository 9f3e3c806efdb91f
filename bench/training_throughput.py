"""LoRA SFT throughput: our training loop vs a stock transformers `Trainer` + peft run, same data, same run.

Both sides train the same LoRA (rank, alpha, target layers) on the same base model, in the same precision, on
the same encoded examples: Alpaca seed tasks as one-turn conversations, tokenised once by our
`ConversationEncoder`, so token ids and answer-only labels are identical. The baseline gets them the way a
`Trainer` is usually fed: `batch_size` examples a step, padded to the longest by `DataCollatorForSeq2Seq`
(label -100 on prompt and padding), loss from the model's full logits. Ours packs them into rows of
`--max-seq-len` tokens (no attention between examples) with `--rows` rows a step, about the same number of
examples a step, and computes the head only where an answer token is trained.

The figure is real tokens per second: tokens that are not padding, over the time of the training loop (model
loading, setup and the final checkpoint excluded). Each side first trains one warm-up batch of other examples,
then each round trains every timed example once; rounds alternate baseline, ours, baseline, ours and the
medians are compared. Targets: ratio >= 1.5 on the CPU; on a GPU >= 80,000 real tokens/s on a
TinyLlama-1.1B-shaped model with batches of 16.

    python bench/training_throughput.py [--steps 4] [--batch-size 8] [--rounds 2] [--threads 1]
    python bench/training_throughput.py --shape tinyllama --device cuda --precision bf16 --batch-size 16 --steps 40

On a shared CPU, `--threads 1` gives steadier figures: two threads that wait on each other under other load
lose far more time than one. On a GPU, `--rows 16 --max-seq-len 1024` trains 16 full rows a step as well: a step
of ~16 examples (~2,400 tokens) is expected to leave the GPU waiting on Python's kernel launches (not yet measured).

`--shape tinyllama` builds a Llama with TinyLlama-1.1B's shape (hidden 2048, MLP 5632, 22 layers, 32 heads,
4 key/value heads, vocabulary 32,000) and random weights in a temporary folder, with the tokenizer and chat
template of `--tokenizer` (default: the configured model's folder). Token ids beyond the 32,000-word vocabulary
are folded into it (id mod 32,000): with random weights only shapes and lengths matter, and the lengths stay
those of a real tokenizer.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bot.model.chat_format import ChatFormat
from training.arguments import LoraArguments, Precision, TrainArguments
from training.datasets import ChatMessage
from training.distributed import Processes
from training.encoding import IGNORE_INDEX, ConversationEncoder, EncodedExample, truncate
from training.loop import LOSS_LOG, Fingerprint, fit
from training.model import PrecisionPlan, load_for_training, plan_precision
from training.packing import Row, micro_batches, pack
from training.sft import SFTObjective

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_seed_tasks.jsonl"
LEARNING_RATE = 2e-4
# TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json).
TINYLLAMA_VOCAB = 32000
TINYLLAMA_SHAPE: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": TINYLLAMA_VOCAB,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int  # baseline: examples a step
    rows: int  # ours: packed rows a step
    max_seq_len: int
    precision: Precision
    lora: LoraArguments = field(default_factory=LoraArguments)
    seed: int = 0


@dataclass
class Measurement:
    side: str
    steps: int
    examples: int
    real_tokens: int  # tokens that are not padding
    computed_tokens: int  # tokens the model ran on, padding included
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.real_tokens / self.seconds

    @property
    def padding_share(self) -> float:
        return 1 - self.real_tokens / self.computed_tokens


def load_conversations(path: Path) -> list[list[ChatMessage]]:
    """Each instance of each seed task: the instruction (and its input) asked, the output answered."""
    conversations = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        task = json.loads(line)
        for instance in task["instances"]:
            question = "\n\n".join(part for part in (task["instruction"], instance["input"]) if part.strip())
            conversations.append(
                [ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=instance["output"])]
            )
    return conversations


def encode_all(
    folder: Path, conversations: Sequence[Sequence[ChatMessage]], max_len: int, vocab_size: int | None = None
) -> list[EncodedExample]:
    """Encoded, cut to `max_len`; ids folded into `vocab_size` when the model's vocabulary is smaller."""
    encoder = ConversationEncoder(folder)
    encoded = []
    for messages in conversations:
        kept = truncate(encoder.encode(messages), max_len)
        if kept is None:
            continue
        if vocab_size is not None:
            kept = EncodedExample(
                [i % vocab_size for i in kept.input_ids],
                [label if label == IGNORE_INDEX else label % vocab_size for label in kept.labels],
            )
        encoded.append(kept)
    return encoded


def split_examples(
    examples: Sequence[EncodedExample], warmup: int, timed: int, seed: int
) -> tuple[list[EncodedExample], list[EncodedExample]]:
    """A seeded sample: `warmup` examples, then `timed` others (the data repeats when it is shorter)."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    needed = warmup + timed
    cycled = (order * (needed // len(order) + 1))[:needed]
    return cycled[:warmup], cycled[warmup:]


def configured_folder() -> Path:
    """The configured model's folder (the embedded model is converted once, then cached)."""
    from bot.config import load_settings
    from bot.model.loader import resolve_model

    return resolve_model(load_settings()).folder


def build_tinyllama(
    tokenizer_folder: Path, out: Path, device: torch.device, shape: dict[str, Any] | None = None
) -> Path:
    """A Llama of TinyLlama-1.1B's `shape` with random bf16 weights, with `tokenizer_folder`'s tokenizer files."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    chat = ChatFormat(tokenizer_folder)
    special = {name: chat.tokenizer.token_to_id(text) for name, text in chat.special_tokens.items()}
    config = LlamaConfig(
        **(shape or TINYLLAMA_SHAPE),
        bos_token_id=special.get("bos_token"),
        eos_token_id=special.get("eos_token"),
        pad_token_id=special.get("pad_token"),
        tie_word_embeddings=False,
        use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialising 1.1 B weights is far quicker on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer_folder / name).exists():
            shutil.copy(tokenizer_folder / name, out / name)
    del model
    return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StockTrainer:
    """The baseline: `transformers.Trainer` on a peft model, padded batches, the model's own loss."""

    def __init__(self, folder: Path, config: BenchConfig, device: torch.device, work_dir: Path) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

        self.config = config
        self.device = device
        self.work_dir = work_dir
        self.plan = plan_precision(config.precision, device)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=self.plan.weights)
        base.config.use_cache = False
        torch.manual_seed(config.seed)
        lora = LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        self.model = get_peft_model(base, lora)
        self.real_tokens = 0
        self.computed_tokens = 0
        self.model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs["attention_mask"]  # (B, T), 0 on padding
        self.real_tokens += int(mask.sum())
        self.computed_tokens += mask.numel()

    def measure(self, examples: Sequence[EncodedExample]) -> Measurement:
        from transformers import Trainer, TrainerCallback, TrainingArguments
        from transformers.trainer_callback import PrinterCallback

        device = self.device

        class Clock(TrainerCallback):
            """The training loop's wall time: after the optimiser and data loader are built, before the summary."""

            started = 0.0
            seconds = 0.0

            def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
                _synchronize(device)
                self.started = time.perf_counter()

            def on_train_end(self, *args: Any, **kwargs: Any) -> None:
                _synchronize(device)
                self.seconds = time.perf_counter() - self.started

        steps = max(1, len(examples) // self.config.batch_size)
        arguments = TrainingArguments(
            output_dir=str(self.work_dir / "stock"),
            per_device_train_batch_size=self.config.batch_size,
            max_steps=steps,
            learning_rate=LEARNING_RATE,
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            bf16=self.plan.name == "bf16",
            fp16=self.plan.name == "fp16",
            use_cpu=device.type == "cpu",
            seed=self.config.seed,
        )
        dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples[: steps * self.config.batch_size]]
        clock = Clock()
        trainer = Trainer(
            model=self.model, args=arguments, train_dataset=dataset, data_collator=self.collator, callbacks=[clock]
        )
        trainer.remove_callback(PrinterCallback)
        self.real_tokens = self.computed_tokens = 0
        trainer.train()
        return Measurement("stock Trainer", steps, len(dataset), self.real_tokens, self.computed_tokens, clock.seconds)


class OurLoop:
    """Ours: packed rows, the answer-only head and loss, `training.loop.fit`."""

    def __init__(self, folder: Path, config: BenchConfig, device: torch.device, work_dir: Path) -> None:
        self.config = config
        self.work_dir = work_dir
        self.processes = Processes(0, 1, device)
        self.plan: PrecisionPlan = plan_precision(config.precision, device)
        self.model = load_for_training(folder, device, self.plan, config.lora, config.seed)
        self.objective = SFTObjective(ConversationEncoder(folder).pad_id)
        self.fingerprint = Fingerprint(folder.name, "", "", config.lora.model_dump(), "sft")

    def measure(self, examples: Sequence[EncodedExample]) -> Measurement:
        rows = pack(examples, self.config.max_seq_len)
        batches = micro_batches(rows, self.config.rows, self.config.seed)
        args = TrainArguments(
            prompt_format="chat",
            max_seq_len=self.config.max_seq_len,
            micro_batch_size=self.config.rows,
            max_steps=len(batches),
            learning_rate=LEARNING_RATE,
            precision=self.config.precision,
            lora=self.config.lora,
            seed=self.config.seed,
        )
        run_dir = self.work_dir / "ours"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        fit(
            self.model,
            self.objective,
            lambda epoch: batches,
            len(batches),
            args,
            run_dir,
            self.processes,
            self.plan,
            self.fingerprint,
        )
        # The loop's own log: tokens of each step and the time at its end, before the final checkpoint is written.
        log = [json.loads(line) for line in (run_dir / LOSS_LOG).read_text(encoding="utf-8").splitlines()]
        computed = sum(len(batch) * max(len(row) for row in batch) for batch in batches)
        return Measurement(
            "our loop", len(batches), len(examples), sum(r["tokens"] for r in log), computed, log[-1]["elapsed_s"]
        )


def rows_for(examples: Sequence[EncodedExample], batch_size: int, max_len: int) -> int:
    """Packed rows a step that hold about `batch_size` examples."""
    mean = sum(len(e) for e in examples) / len(examples)
    return max(1, round(batch_size * mean / max_len))


def compare(
    folder: Path,
    warmup: Sequence[EncodedExample],
    timed: Sequence[EncodedExample],
    config: BenchConfig,
    device: torch.device,
    rounds: int,
    work_dir: Path,
) -> tuple[list[Measurement], list[Measurement]]:
    """Warm each side up, then alternate timed rounds: baseline, ours, baseline, ours..."""
    sides = (StockTrainer(folder, config, device, work_dir), OurLoop(folder, config, device, work_dir))
    for side in sides:
        side.measure(warmup)
    stock: list[Measurement] = []
    ours: list[Measurement] = []
    for _ in range(rounds):
        stock.append(sides[0].measure(timed))
        ours.append(sides[1].measure(timed))
    return stock, ours


def _rows(rows: Sequence[Row]) -> str:
    return f"{len(rows)} rows, {sum(len(r) for r in rows) / len(rows):.0f} tokens a row on average"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Alpaca seed tasks (jsonl).")
    parser.add_argument("--model", type=Path, default=None, help="A model folder (default: the configured model).")
    parser.add_argument("--shape", choices=("model", "tinyllama"), default="model")
    parser.add_argument("--tokenizer", type=Path, default=None, help="Tokenizer folder for --shape tinyllama.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--steps", type=int, default=4, help="Baseline steps a round (batch-size examples each).")
    parser.add_argument("--batch-size", type=int, default=8, help="Baseline examples a step.")
    parser.add_argument("--max-seq-len", type=int, default=512, help="Our packed row length; examples are cut to it.")
    parser.add_argument("--rows", type=int, default=None, help="Our rows a step (default: about batch-size examples).")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating timed rounds of each side.")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"no seed tasks at {args.data}: pass --data with an alpaca_seed_tasks.jsonl file")
    if args.threads:
        torch.set_num_threads(args.threads)

    from bot.model.device import select_device

    device = select_device(args.device)
    work_dir = Path(tempfile.mkdtemp(prefix="training-throughput-"))
    try:
        vocab_size = None
        if args.shape == "tinyllama":
            folder = build_tinyllama(args.tokenizer or args.model or configured_folder(), work_dir / "tiny", device)
            vocab_size = TINYLLAMA_VOCAB
        else:
            folder = args.model or configured_folder()
        examples = encode_all(folder, load_conversations(args.data), args.max_seq_len, vocab_size)
        warmup, timed = split_examples(examples, args.batch_size, args.steps * args.batch_size, seed=0)
        config = BenchConfig(
            batch_size=args.batch_size,
            rows=args.rows or rows_for(timed, args.batch_size, args.max_seq_len),
            max_seq_len=args.max_seq_len,
            precision=args.precision,
            lora=LoraArguments(rank=args.rank, alpha=args.alpha),
        )
        stock, ours = compare(folder, warmup, timed, config, device, args.rounds, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    plan = plan_precision(args.precision, device)
    packed = pack(timed, args.max_seq_len)
    stock_rate = statistics.median(m.tokens_per_second for m in stock)
    our_rate = statistics.median(m.tokens_per_second for m in ours)
    print(
        f"model {folder.name if args.shape == 'model' else 'TinyLlama-1.1B shape (random weights)'} on {device}, "
        f"{plan.name}, LoRA r{config.lora.rank} alpha {config.lora.alpha} on {','.join(config.lora.target_modules)}"
    )
    print(
        f"data: {len(timed)} timed examples a round ({sum(len(e) for e in timed)} tokens, "
        f"{statistics.mean(len(e) for e in timed):.0f} mean, {max(len(e) for e in timed)} max), "
        f"{args.rounds} rounds, a warm-up batch first, {torch.get_num_threads()} CPU threads"
    )
    print(f"stock Trainer: {stock[0].steps} steps of {args.batch_size} examples, padded to the longest in the batch")
    print(f"our loop     : {ours[0].steps} steps of {config.rows} rows <= {args.max_seq_len} tokens, {_rows(packed)}")
    for name, rate, runs in (("stock Trainer", stock_rate, stock), ("our loop     ", our_rate, ours)):
        print(f"{name}: {rate:9.1f} real tokens/s (padding {statistics.median(m.padding_share for m in runs):.1%})")
    target = "target >= 1.5 on the CPU" if device.type == "cpu" else "GPU target: >= 80,000 tokens/s, TinyLlama shape"
    print(f"ratio        : {our_rate / stock_rate:9.2f} ({target})")
    same = {m.real_tokens for m in stock + ours}
    print(f"same real tokens on both sides: {len(same) == 1} ({sorted(same)})")
    print(
        json.dumps(
            {
                "stock_tok_s": [round(m.tokens_per_second, 1) for m in stock],
                "ours_tok_s": [round(m.tokens_per_second, 1) for m in ours],
                "ratio": our_rate / stock_rate,
                "stock_padding_share": statistics.median(m.padding_share for m in stock),
                "real_tokens": sorted(same),
            }
        )
    )


if __name__ == "__main__":
    main()
