"""Training data read into typed records: instruction sets (Alpaca, KoAlpaca, chat messages) and feedback exports.

Each loader reads one file and returns typed examples, or raises `DatasetError` naming the file, the line and
what was expected against what came. Files are UTF-8 (a byte-order mark is fine); blank lines are skipped.

Forms read, by loader:

- `load_sft(path, "alpaca")`: a JSON array or JSON lines of `{instruction, input, output}` (optional `system`,
  and LLaMA-Factory's `history` of `[question, answer]` pairs), or the seed-task form
  `{instruction, instances: [{input, output}, ...]}`, one example per instance.
- `load_sft(path, "koalpaca")`: text made of `### 질문: ...` / `### 답변: ...` blocks (one example per pair), or
  JSON rows with `instruction` / `output` (KoAlpaca v1.0 and v1.1) or a `text` field in the block form (one
  conversation per row).
- `load_sft(path, "chat")`: rows of `{"messages": [{role, content}, ...]}` (TRL, OpenAI) or ShareGPT's
  `{"conversations": [{from, value}, ...]}` (LLaMA-Factory), `from` being human, gpt or system.
- `load_sft(path, "feedback")`: the SFT feedback export, `{"messages": [...]}` rows.
- `load_preferences(path)`: TRL's `{prompt, chosen, rejected}` with strings or message lists, TRL's implicit
  prompt (`chosen` and `rejected` whole conversations sharing all but the last message), and LLaMA-Factory's
  ShareGPT ranking rows (`{messages, chosen: {role, content}, rejected: {...}}`).
- `load_kto(path)`: TRL's `{prompt, completion, label}` with strings or message lists (`desirable` for
  `label` too, as a dumped `KTOExample` has it), and LLaMA-Factory's `{messages, label | kto_tag}` whose last
  message is the completion.

The `*_row` functions write the same records back in the forms the feedback export uses.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from bot.errors import DomainbotError

Role = Literal["system", "user", "assistant"]
SFTFormat = Literal["alpaca", "koalpaca", "chat", "feedback"]
RowStyle = Literal["trl", "llamafactory"]

SFT_FORMATS: tuple[str, ...] = ("alpaca", "koalpaca", "chat", "feedback")
# Alpaca joins instruction and input with a blank line (stanford_alpaca's prompt puts them in two sections).
INPUT_SEPARATOR = "\n\n"
# Role names of OpenAI/TRL messages and of ShareGPT turns, mapped to ours.
MESSAGE_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES: dict[str, Role] = {"system": "system", "human": "user", "gpt": "assistant"}
# KoAlpaca's training text: "### 질문: {instruction}\n\n### 답변: {output}<|endoftext|>".
_KOALPACA_MARK = re.compile(r"^[ \t]*###[ \t]*(질문|답변)[ \t]*:[ \t]*", re.MULTILINE)
_KOALPACA_END_TOKENS = ("<|endoftext|>", "</s>")
_HASH_CHUNK = 1 << 20
_MARKS = {"user": "### 질문:", "assistant": "### 답변:"}

T = TypeVar("T")


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


def _check_conversation(messages: list[ChatMessage], last: Role) -> None:
    if not messages:
        raise ValueError("expected at least one message, got none")
    for i, message in enumerate(messages, 1):
        if not message.content.strip():
            raise ValueError(f"message {i} ({message.role}): expected text, got an empty string")
        if message.role == "system" and i > 1:
            raise ValueError(f"message {i}: expected the system message first, got it after other messages")
    if messages[-1].role != last:
        raise ValueError(f"expected the last message to be from the {last}, got one from the {messages[-1].role}")


class SFTExample(BaseModel):
    """A conversation to learn from: the loss goes on the assistant turns, the last message is the assistant's.
    `last_turn_only`: earlier assistant turns are context (the few-shot turns of a logged prompt), not targets."""

    messages: list[ChatMessage]
    last_turn_only: bool = False

    @model_validator(mode="after")
    def _ends_with_answer(self) -> SFTExample:
        _check_conversation(self.messages, "assistant")
        return self


class PreferenceExample(BaseModel):
    """For one prompt (ending with the user's turn), an answer people preferred and one they rejected."""

    prompt: list[ChatMessage]
    chosen: str
    rejected: str

    @model_validator(mode="after")
    def _complete(self) -> PreferenceExample:
        _check_conversation(self.prompt, "user")
        for name, text in (("chosen", self.chosen), ("rejected", self.rejected)):
            if not text.strip():
                raise ValueError(f"expected a non-empty {name} answer, got an empty string")
        return self


class KTOExample(BaseModel):
    """One answer to a prompt, marked desirable (👍, a correction) or not (👎)."""

    prompt: list[ChatMessage]
    completion: str
    desirable: bool

    @model_validator(mode="after")
    def _complete(self) -> KTOExample:
        _check_conversation(self.prompt, "user")
        if not self.completion.strip():
            raise ValueError("expected a non-empty completion, got an empty string")
        return self


class DatasetError(DomainbotError):
    """A data file that cannot be read as training data; the message names the file, the line and the problem."""

    def __init__(self, problem: str, path: Path | None = None, line: int | None = None) -> None:
        where = f"{path}:{line}: " if path is not None and line is not None else f"{path}: " if path else ""
        super().__init__(where + problem)
        self.problem = problem
        self.path = path
        self.line = line


class _RowError(ValueError):
    """A problem inside one record; the reader adds the file and line."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---- reading files --------------------------------------------------------------------------------------------


def _read_text(path: Path, expected: str) -> str:
    if not path.is_file():
        what = "a folder" if path.is_dir() else "nothing"
        raise DatasetError(f"expected {expected} file, found {what} there", path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"expected UTF-8 text, got byte 0x{data[exc.start]:02x} that UTF-8 does not allow; save the file as UTF-8",
            path,
            line,
        ) from None
    if not text.strip():
        raise DatasetError(f"the file is empty; expected {expected} file with at least one example", path)
    return text


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, list):
        return "an empty array" if not value else "an array"
    return "an object"


def _json_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line, value) for each item of a JSON array, or for each line of JSON lines."""
    if text.lstrip().startswith("["):
        yield from _array_items(path, text)
        return
    # Split on newlines only: JSON strings may hold U+2028 and friends, which str.splitlines would cut at.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"expected one JSON object per line, got invalid JSON ({exc.msg} at column {exc.colno})", path, number
            ) from None


def _array_items(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """The items of a top-level JSON array, each with the line it starts on (json.loads would lose that)."""
    decoder = json.JSONDecoder()
    space = re.compile(r"\s*")
    pos = space.match(text, text.index("[") + 1).end()  # type: ignore[union-attr]
    line, counted = 1, 0

    def line_at(index: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, index)
        counted = index
        return line

    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"expected a JSON array of objects, got invalid JSON ({exc.msg})", path, exc.lineno
                ) from None
            yield line_at(pos), value
            pos = space.match(text, end).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = space.match(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            got = repr(text[pos]) if pos < len(text) else "the end of the file"
            raise DatasetError(f"expected ',' or ']' after an array item, got {got}", path, line_at(pos))
    if text[pos:].strip():
        raise DatasetError("expected nothing after the closing ']', got more text", path, line_at(pos))


def _load(path: Path, expected: str, convert: Callable[[dict[str, Any]], list[T]], text: str | None = None) -> list[T]:
    """Every record of a JSON or JSON-lines file through `convert`, errors located at the record's line."""
    text = _read_text(path, expected) if text is None else text
    examples: list[T] = []
    for line, value in _json_records(path, text):
        if not isinstance(value, dict):
            raise DatasetError(f"expected a JSON object, got {_json_kind(value)}", path, line)
        try:
            examples += convert(value)
        except _RowError as exc:
            raise DatasetError(str(exc), path, line) from None
        except ValidationError as exc:
            raise DatasetError(_validation_message(exc), path, line) from None
    if not examples:
        raise DatasetError(f"no examples in the file; expected {expected} file with at least one", path)
    return examples


def _validation_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    place = ".".join(str(part) for part in error["loc"])
    return f"{place}: {message}" if place else message


# ---- fields ---------------------------------------------------------------------------------------------------


def _text(row: dict[str, Any], key: str, *, required: bool = True) -> str:
    """A string field; a required one must hold text, an optional one may be missing, null or empty."""
    value = row.get(key)
    if value is None and not required:
        return ""
    if value is None:
        present = ", ".join(sorted(row)) or "none"
        raise _RowError(f"expected a string field {key!r}, got no such field (fields: {present})")
    if not isinstance(value, str):
        raise _RowError(f"expected {key!r} to be a string, got {_json_kind(value)}")
    if required and not value.strip():
        raise _RowError(f"expected text in {key!r}, got an empty string")
    return value.strip()


def _messages(value: Any, key: str) -> list[ChatMessage]:
    """OpenAI/TRL `{role, content}` messages or ShareGPT `{from, value}` turns."""
    if not isinstance(value, list) or not value:
        raise _RowError(f"expected {key!r} to be a non-empty array of messages, got {_json_kind(value)}")
    messages = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise _RowError(f"{key} message {i}: expected an object with role and content, got {_json_kind(item)}")
        messages.append(_message(item, f"{key} message {i}"))
    return messages


def _message(item: dict[str, Any], where: str) -> ChatMessage:
    if "from" in item or "value" in item:
        role_key, content_key, roles = "from", "value", SHAREGPT_ROLES
    else:
        role_key, content_key, roles = "role", "content", MESSAGE_ROLES
    role = item.get(role_key)
    if role not in roles:
        names = ", ".join(roles)
        raise _RowError(f"{where}: expected {role_key!r} to be one of {names}, got {json.dumps(role)}")
    content = item.get(content_key)
    if not isinstance(content, str) or not content.strip():
        raise _RowError(f"{where}: expected text in {content_key!r}, got {_json_kind(content)}")
    return ChatMessage(role=roles[role], content=content.strip())


def _conversation(row: dict[str, Any]) -> tuple[str, list[ChatMessage]]:
    for key in ("messages", "conversations"):
        if key in row:
            messages = _messages(row[key], key)
            system = _text(row, "system", required=False)
            if system and messages[0].role != "system":
                messages.insert(0, ChatMessage(role="system", content=system))
            return key, messages
    present = ", ".join(sorted(row)) or "none"
    raise _RowError(f"expected a 'messages' (or ShareGPT 'conversations') array, got fields: {present}")


def _prompt(value: Any, key: str) -> list[ChatMessage]:
    if isinstance(value, str):
        if not value.strip():
            raise _RowError(f"expected text in {key!r}, got an empty string")
        return [ChatMessage(role="user", content=value.strip())]
    return _messages(value, key)


def _answer(value: Any, key: str) -> str:
    """A reply given as a string, a one-message assistant list (TRL) or an assistant message object."""
    if isinstance(value, str):
        if not value.strip():
            raise _RowError(f"expected text in {key!r}, got an empty string")
        return value.strip()
    if isinstance(value, dict):
        value = [value]
    messages = _messages(value, key)
    if len(messages) != 1 or messages[0].role != "assistant":
        roles = ", ".join(m.role for m in messages)
        raise _RowError(f"expected {key!r} to be one assistant message, got messages from: {roles}")
    return messages[0].content


def _label(row: dict[str, Any]) -> bool:
    """TRL's `label`, LLaMA-Factory's `kto_tag`, or `desirable` as a dumped KTOExample holds it."""
    key = next((k for k in ("label", "kto_tag", "desirable") if k in row), None)
    if key is None:
        raise _RowError("expected a boolean 'label' (or 'kto_tag', 'desirable'), got no such field")
    if not isinstance(row[key], bool):
        raise _RowError(f"expected {key!r} to be true or false, got {_json_kind(row[key])}")
    return bool(row[key])


# ---- formats --------------------------------------------------------------------------------------------------


def _instruction_example(instruction: str, input_text: str, output: str, row: dict[str, Any]) -> SFTExample:
    messages = []
    system = _text(row, "system", required=False)
    if system:
        messages.append(ChatMessage(role="system", content=system))
    history = row.get("history") or []
    if not isinstance(history, list):
        raise _RowError(f"expected 'history' to be an array of [question, answer] pairs, got {_json_kind(history)}")
    for i, pair in enumerate(history, 1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)):
            raise _RowError(f"history item {i}: expected a [question, answer] pair of texts, got {_json_kind(pair)}")
        messages += [
            ChatMessage(role="user", content=pair[0].strip()),
            ChatMessage(role="assistant", content=pair[1].strip()),
        ]
    user = instruction + INPUT_SEPARATOR + input_text if input_text else instruction
    messages += [ChatMessage(role="user", content=user), ChatMessage(role="assistant", content=output)]
    return SFTExample(messages=messages)


def _alpaca(row: dict[str, Any]) -> list[SFTExample]:
    instruction = _text(row, "instruction")
    if "instances" not in row:
        return [_instruction_example(instruction, _text(row, "input", required=False), _text(row, "output"), row)]
    instances = row["instances"]
    if not isinstance(instances, list) or not instances:
        raise _RowError(
            f"expected 'instances' to be a non-empty array of {{input, output}}, got {_json_kind(instances)}"
        )
    examples = []
    for i, instance in enumerate(instances, 1):
        if not isinstance(instance, dict):
            raise _RowError(f"instance {i}: expected an object with input and output, got {_json_kind(instance)}")
        try:
            input_text, output = _text(instance, "input", required=False), _text(instance, "output")
        except _RowError as exc:
            raise _RowError(f"instance {i}: {exc}") from None
        examples.append(_instruction_example(instruction, input_text, output, row))
    return examples


class _BlockError(_RowError):
    """A problem in the `index`-th question/answer block, so a text file can name the block's line."""

    def __init__(self, problem: str, index: int) -> None:
        super().__init__(problem)
        self.index = index


def _koalpaca_blocks(text: str) -> list[tuple[int, Role, str]]:
    """(offset, role, content) for each `### 질문:` / `### 답변:` block; text before the first one is an error."""
    marks = list(_KOALPACA_MARK.finditer(text))
    lead = text[: marks[0].start()] if marks else text
    if lead.strip():
        raise _BlockError(f"expected the text to start with '### 질문:', got {lead.strip()[:40]!r}", 0)
    blocks: list[tuple[int, Role, str]] = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        content = text[mark.end() : following.start() if following else len(text)].strip()
        for token in _KOALPACA_END_TOKENS:
            content = content.removesuffix(token).rstrip()
        blocks.append((mark.start(), "user" if mark.group(1) == "질문" else "assistant", content))
    return blocks


def _koalpaca_messages(blocks: list[tuple[int, Role, str]], first: int = 0) -> list[ChatMessage]:
    """Alternating question/answer blocks, ending with an answer, as messages."""
    for i, (_, role, content) in enumerate(blocks):
        expected: Role = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise _BlockError(f"expected {_MARKS[expected]!r} next, got {_MARKS[role]!r}", first + i)
        if not content:
            raise _BlockError(f"expected text after {_MARKS[role]!r}, got none", first + i)
    if len(blocks) % 2:
        raise _BlockError(
            "expected '### 답변:' after the last question, got the end of the text", first + len(blocks) - 1
        )
    return [ChatMessage(role=role, content=content) for _, role, content in blocks]


def _koalpaca_row(row: dict[str, Any]) -> list[SFTExample]:
    if "text" in row and "instruction" not in row:
        return [SFTExample(messages=_koalpaca_messages(_koalpaca_blocks(_text(row, "text"))))]
    return _alpaca(row)


def _koalpaca_text(path: Path, text: str) -> list[SFTExample]:
    """A text file of question/answer blocks: one example per pair, errors at the line of the block."""
    blocks: list[tuple[int, Role, str]] = []
    try:
        blocks = _koalpaca_blocks(text)
        return [
            SFTExample(messages=_koalpaca_messages(blocks[start : start + 2], start))
            for start in range(0, len(blocks), 2)
        ]
    except _BlockError as exc:
        # Counted only on error: counting lines for every block would make a large file quadratic.
        line = text.count("\n", 0, blocks[exc.index][0]) + 1 if blocks else 1
        raise DatasetError(str(exc), path, line) from None


def _chat(row: dict[str, Any]) -> list[SFTExample]:
    key, messages = _conversation(row)
    if not any(m.role == "assistant" for m in messages):
        raise _RowError(f"expected at least one assistant message in {key!r}, got none")
    return [SFTExample(messages=messages)]


def _feedback(row: dict[str, Any]) -> list[SFTExample]:
    if "messages" not in row:
        present = ", ".join(sorted(row)) or "none"
        raise _RowError(f"expected a 'messages' array (the SFT export's form), got fields: {present}")
    # An exported row is the prompt the bot built (few-shot turns included) and the wanted answer: only the
    # answer is learned.
    return [example.model_copy(update={"last_turn_only": True}) for example in _chat(row)]


def _preference(row: dict[str, Any]) -> list[PreferenceExample]:
    for key in ("chosen", "rejected"):
        if key not in row:
            raise _RowError(f"expected a {key!r} answer, got no such field")
    if "prompt" in row:
        prompt = _prompt(row["prompt"], "prompt")
    elif "messages" in row or "conversations" in row:
        prompt = _conversation(row)[1]
    elif isinstance(row["chosen"], list) and isinstance(row["rejected"], list):
        # TRL's implicit prompt: both are whole conversations that differ only in the last (assistant) message.
        chosen, rejected = _messages(row["chosen"], "chosen"), _messages(row["rejected"], "rejected")
        if len(chosen) < 2:
            raise _RowError("expected 'chosen' to hold the prompt and the answer, got a single message")
        if chosen[:-1] != rejected[:-1]:
            raise _RowError("expected 'chosen' and 'rejected' to share every message but the last, got different ones")
        for key, conversation in (("chosen", chosen), ("rejected", rejected)):
            if conversation[-1].role != "assistant":
                raise _RowError(f"expected {key!r} to end with an assistant message, got {conversation[-1].role}")
        return [PreferenceExample(prompt=chosen[:-1], chosen=chosen[-1].content, rejected=rejected[-1].content)]
    else:
        raise _RowError("expected a 'prompt' (or 'messages') with 'chosen' and 'rejected', got no prompt")
    return [
        PreferenceExample(
            prompt=prompt, chosen=_answer(row["chosen"], "chosen"), rejected=_answer(row["rejected"], "rejected")
        )
    ]


def _kto(row: dict[str, Any]) -> list[KTOExample]:
    label = _label(row)
    if "prompt" in row or "completion" in row:
        for key in ("prompt", "completion"):
            if key not in row:
                raise _RowError(f"expected {key!r} beside the other, got no such field")
        return [
            KTOExample(
                prompt=_prompt(row["prompt"], "prompt"),
                completion=_answer(row["completion"], "completion"),
                desirable=label,
            )
        ]
    key, messages = _conversation(row)
    if messages[-1].role != "assistant":
        raise _RowError(f"expected {key!r} to end with the assistant's completion, got a {messages[-1].role} message")
    return [KTOExample(prompt=messages[:-1], completion=messages[-1].content, desirable=label)]


_SFT_ROWS: dict[str, Callable[[dict[str, Any]], list[SFTExample]]] = {
    "alpaca": _alpaca,
    "koalpaca": _koalpaca_row,
    "chat": _chat,
    "feedback": _feedback,
}
_SFT_EXPECTED = {
    "alpaca": "an Alpaca (instruction/input/output)",
    "koalpaca": "a KoAlpaca",
    "chat": "a chat-messages",
    "feedback": "an SFT feedback export",
}


def load_sft(path: Path, fmt: SFTFormat) -> list[SFTExample]:
    """Supervised examples from an instruction or chat data file in the named format."""
    if fmt not in _SFT_ROWS:
        raise DatasetError(f"expected a format among {', '.join(SFT_FORMATS)}, got {fmt!r}", path)
    if fmt == "koalpaca":
        text = _read_text(path, _SFT_EXPECTED[fmt])
        if not text.lstrip().startswith(("{", "[")):
            return _koalpaca_text(path, text)
        return _load(path, _SFT_EXPECTED[fmt], _koalpaca_row, text)
    return _load(path, _SFT_EXPECTED[fmt], _SFT_ROWS[fmt])


def load_preferences(path: Path) -> list[PreferenceExample]:
    """Preference pairs: the DPO export, or TRL / LLaMA-Factory preference rows."""
    return _load(path, "a preference (prompt/chosen/rejected)", _preference)


def load_kto(path: Path) -> list[KTOExample]:
    """Unpaired preferences: the KTO export, or TRL / LLaMA-Factory KTO rows."""
    return _load(path, "a KTO (prompt/completion/label)", _kto)


# ---- writing rows ---------------------------------------------------------------------------------------------


def _dump(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def sft_row(example: SFTExample) -> dict[str, Any]:
    """TRL's conversational form, which LLaMA-Factory reads as ShareGPT with OpenAI tags."""
    return {"messages": _dump(example.messages)}


def preference_row(example: PreferenceExample, style: RowStyle = "trl") -> dict[str, Any]:
    """TRL: conversational prompt/chosen/rejected. LLaMA-Factory: ShareGPT ranking (chosen/rejected objects)."""
    chosen = {"role": "assistant", "content": example.chosen}
    rejected = {"role": "assistant", "content": example.rejected}
    if style == "llamafactory":
        return {"messages": _dump(example.prompt), "chosen": chosen, "rejected": rejected}
    return {"prompt": _dump(example.prompt), "chosen": [chosen], "rejected": [rejected]}


def kto_row(example: KTOExample, style: RowStyle = "trl") -> dict[str, Any]:
    """TRL: conversational prompt/completion/label. LLaMA-Factory: the whole conversation and a `label` tag."""
    completion = {"role": "assistant", "content": example.completion}
    if style == "llamafactory":
        return {"messages": [*_dump(example.prompt), completion], "label": example.desirable}
    return {"prompt": _dump(example.prompt), "completion": [completion], "label": example.desirable}
