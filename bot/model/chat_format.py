"""A model folder's tokenizer and chat template, read with `tokenizers` and jinja2 alone.

This renders a conversation exactly as transformers' `apply_chat_template` does for the same folder (a
sandboxed jinja environment with trimmed blocks and the same helper globals), without importing transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bot.model.backend import Message

if TYPE_CHECKING:
    from jinja2 import Template


class ChatTemplateMissing(ValueError):
    """The folder's tokenizer has no chat template."""


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        return str(value.get("content")) if value.get("content") is not None else None
    return str(value) if value is not None else None


def _raise_exception(message: str) -> NoReturn:
    raise ValueError(f"chat template error: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def compile_template(text: str) -> Template:
    """A chat template compiled the way transformers compiles it, so both render the same text."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return environment.from_string(text)


def render_template(
    template: Template | None,
    messages: Sequence[Message],
    special_tokens: dict[str, str],
    add_generation_prompt: bool = True,
) -> str:
    """The conversation as the model reads it; with the generation prompt, ready for the next answer."""
    if template is None:
        raise ChatTemplateMissing("this tokenizer has no chat template")
    conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
    return template.render(messages=conversation, add_generation_prompt=add_generation_prompt, **special_tokens)


class ChatFormat:
    """Renders messages through the chat template and maps text to token ids and back."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config_file = folder / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        self.special_tokens = {
            name: text
            for name in ("bos_token", "eos_token", "unk_token", "pad_token")
            if (text := _token_text(config.get(name))) is not None
        }
        template = self._template_text(folder, config)
        self.template = compile_template(template) if template else None
        eos = self.special_tokens.get("eos_token")
        self.eos_token_id = self.tokenizer.token_to_id(eos) if eos else None

    @staticmethod
    def _template_text(folder: Path, config: dict[str, Any]) -> str | None:
        if (folder / "chat_template.jinja").exists():
            return (folder / "chat_template.jinja").read_text(encoding="utf-8")
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: use the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return str(template) if template else None

    @property
    def has_template(self) -> bool:
        return self.template is not None

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The conversation as the model reads it; with the generation prompt, ready for the next answer."""
        return render_template(self.template, messages, self.special_tokens, add_generation_prompt)

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        # The template writes the special tokens itself, so the tokenizer must not add more.
        return list(self.tokenizer.encode(self.render(messages), add_special_tokens=False).ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))
