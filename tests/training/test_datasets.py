"""Loading instruction, chat and preference data: every accepted form, and one clear error per bad file."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import SHARED_DATA
from training.datasets import (
    ChatMessage,
    DatasetError,
    KTOExample,
    PreferenceExample,
    SFTExample,
    file_sha256,
    kto_row,
    load_kto,
    load_preferences,
    load_sft,
    preference_row,
)

Turns = list[list[tuple[str, str]]]


def turns(examples: list[SFTExample]) -> Turns:
    return [[(m.role, m.content) for m in example.messages] for example in examples]


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


U, A, S = "user", "assistant", "system"

GOOD_SFT = [
    pytest.param(
        "alpaca",
        "a.jsonl",
        jsonl(
            {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
            {"instruction": "Name a primary colour.", "input": "", "output": "Red"},
        ),
        [[(U, "Translate to French.\n\nGood morning"), (A, "Bonjour")], [(U, "Name a primary colour."), (A, "Red")]],
        id="alpaca-jsonl",
    ),
    pytest.param(
        "alpaca",
        "a.json",
        json.dumps(
            [
                {
                    "instruction": "And in Spanish?",
                    "output": "Buenos días",
                    "system": "You translate.",
                    "history": [["Good morning in French?", "Bonjour"]],
                }
            ],
            indent=2,
        ),
        [
            [
                (S, "You translate."),
                (U, "Good morning in French?"),
                (A, "Bonjour"),
                (U, "And in Spanish?"),
                (A, "Buenos días"),
            ]
        ],
        id="alpaca-array-system-history",
    ),
    pytest.param(
        "alpaca",
        "seed.jsonl",
        jsonl(
            {
                "id": "seed_task_9",
                "instruction": "Add the numbers.",
                "instances": [{"input": "1, 2", "output": "3"}, {"input": "", "output": "Nothing to add."}],
                "is_classification": False,
            }
        ),
        [[(U, "Add the numbers.\n\n1, 2"), (A, "3")], [(U, "Add the numbers."), (A, "Nothing to add.")]],
        id="alpaca-seed-instances",
    ),
    pytest.param(
        "alpaca",
        "bom.jsonl",
        "\ufeff" + '{"instruction": "Hi", "output": "Hello"}\r\n\r\n  \n{"instruction": "Bye", "output": "Ciao"}\r\n',
        [[(U, "Hi"), (A, "Hello")], [(U, "Bye"), (A, "Ciao")]],
        id="alpaca-bom-crlf-blank-lines",
    ),
    pytest.param(
        "koalpaca",
        "ko.txt",
        "### 질문: 김치는 무엇인가요?\n\n### 답변: 발효 채소 음식입니다.<|endoftext|>\n\n"
        "###질문:\n서울은 어디에 있나요?\n###답변:\n한국의 북서부에 있습니다.\n",
        [
            [(U, "김치는 무엇인가요?"), (A, "발효 채소 음식입니다.")],
            [(U, "서울은 어디에 있나요?"), (A, "한국의 북서부에 있습니다.")],
        ],
        id="koalpaca-text",
    ),
    pytest.param(
        "koalpaca",
        "ko.jsonl",
        jsonl(
            {
                "instruction": "양파를 썰면 왜 눈물이 나나요?",
                "output": "황 화합물 때문입니다.",
                "url": "https://kin.example",
            },
            {"instruction": "번역하세요.", "input": "Hello", "output": "안녕하세요"},
        ),
        [
            [(U, "양파를 썰면 왜 눈물이 나나요?"), (A, "황 화합물 때문입니다.")],
            [(U, "번역하세요.\n\nHello"), (A, "안녕하세요")],
        ],
        id="koalpaca-v1.1-rows",
    ),
    pytest.param(
        "koalpaca",
        "ko-text.jsonl",
        jsonl({"text": "### 질문: 하나\n\n### 답변: 일</s>\n\n### 질문: 둘\n\n### 답변: 이"}),
        [[(U, "하나"), (A, "일"), (U, "둘"), (A, "이")]],
        id="koalpaca-text-field-multi-turn",
    ),
    pytest.param(
        "chat",
        "chat.jsonl",
        jsonl(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"},
                ]
            }
        ),
        [[(S, "Be brief."), (U, "2+2?"), (A, "4")]],
        id="chat-openai",
    ),
    pytest.param(
        "chat",
        "sharegpt.json",
        json.dumps(
            [
                {
                    "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
                    "system": "Be kind.",
                }
            ]
        ),
        [[(S, "Be kind."), (U, "Hi"), (A, "Hello!")]],
        id="chat-sharegpt",
    ),
    pytest.param(
        "feedback",
        "sft.jsonl",
        jsonl({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
        [[(U, "Q"), (A, "A")]],
        id="feedback-export",
    ),
]


@pytest.mark.parametrize(("fmt", "name", "content", "expected"), GOOD_SFT)
def test_load_sft_reads_each_form(tmp_path: Path, fmt: str, name: str, content: str, expected: Turns) -> None:
    assert turns(load_sft(write(tmp_path, name, content), fmt)) == expected  # type: ignore[arg-type]


OK_ROW = '{"instruction": "Hi", "output": "Hello"}\n'
TWO_TURNS = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]

BAD_SFT = [
    pytest.param("alpaca", OK_ROW + '{"instruction": "Hi", "output": "Hel\n', 2, "invalid JSON", id="bad-json-line"),
    pytest.param("alpaca", OK_ROW + '{"instruction": "Hi"}\n', 2, "'output', got no such field", id="missing-key"),
    pytest.param("alpaca", '{"instruction": "Hi", "output": "  "}\n', 1, "text in 'output'", id="empty-output"),
    pytest.param("alpaca", '{"instruction": "Hi", "input": 3, "output": "x"}\n', 1, "the number 3", id="wrong-type"),
    pytest.param("alpaca", '["Hi", "Hello"]\n', 1, "a JSON object, got a string", id="array-of-strings"),
    pytest.param(
        "alpaca", "[\n" + OK_ROW + ',\n{"instruction": 1}\n]', 4, "'instruction' to be a string", id="array-item"
    ),
    pytest.param("alpaca", "[\n" + OK_ROW + "\n{}]", 4, "expected ',' or ']'", id="array-missing-comma"),
    pytest.param("alpaca", "[" + OK_ROW + "]\n[]", 2, "nothing after the closing", id="text-after-array"),
    pytest.param("alpaca", '{"instruction": "Hi", "instances": []}\n', 1, "'instances'", id="no-instances"),
    pytest.param(
        "alpaca",
        '{"instruction": "Hi", "instances": [{"input": "", "output": "a"}, {"input": "b"}]}\n',
        1,
        "instance 2: expected a string field 'output'",
        id="instance-missing-output",
    ),
    pytest.param("alpaca", '{"instruction": "Hi", "output": "x", "history": [["only"]]}', 1, "history", id="history"),
    pytest.param("alpaca", "", None, "empty", id="empty-file"),
    pytest.param("alpaca", "\n  \n", None, "empty", id="blank-file"),
    pytest.param("alpaca", "[]", None, "no examples", id="empty-array"),
    pytest.param("alpaca", OK_ROW.encode() + b'{"instruction": "\xff"}\n', 2, "UTF-8", id="not-utf8"),
    pytest.param("koalpaca", "Hello\n### 질문: a\n### 답변: b", 1, "start with '### 질문:'", id="ko-lead-text"),
    pytest.param("koalpaca", "### 질문: a\n### 답변: b\n\n### 질문: c\n", 4, "'### 답변:' after", id="ko-no-answer"),
    pytest.param("koalpaca", "### 질문: a\n\n### 질문: c\n### 답변: d", 3, "expected '### 답변:' next", id="ko-two-q"),
    pytest.param(
        "koalpaca", "### 질문: a\n### 답변:\n\n### 질문: b\n### 답변: c", 2, "text after '### 답변:'", id="ko-empty"
    ),
    pytest.param("koalpaca", jsonl({"text": "### 답변: a"}), 1, "expected '### 질문:' next", id="ko-text-field"),
    pytest.param("chat", jsonl({"messages": [{"role": "bot", "content": "x"}]}), 1, 'got "bot"', id="unknown-role"),
    pytest.param(
        "chat",
        jsonl({"conversations": [{"from": "human", "value": "x"}, {"from": "model", "value": "y"}]}),
        1,
        "message 2: expected 'from' to be one of system, human, gpt",
        id="unknown-sharegpt-role",
    ),
    pytest.param("chat", jsonl({"messages": TWO_TURNS[:1]}), 1, "at least one assistant", id="no-assistant"),
    pytest.param("chat", jsonl({"messages": [*TWO_TURNS, TWO_TURNS[0]]}), 1, "last message", id="ends-with-user"),
    pytest.param(
        "chat", jsonl({"messages": [TWO_TURNS[0], {"role": "assistant", "content": ""}]}), 1, "text in", id="empty"
    ),
    pytest.param(
        "chat",
        jsonl({"messages": [*TWO_TURNS[:1], {"role": "system", "content": "s"}, *TWO_TURNS[1:]]}),
        1,
        "system message first",
        id="system-not-first",
    ),
    pytest.param("chat", jsonl({"text": "x"}), 1, "'messages'", id="no-messages"),
    pytest.param("chat", jsonl({"messages": "Q"}), 1, "non-empty array of messages, got a string", id="messages-str"),
    pytest.param(
        "feedback",
        jsonl({"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}),
        1,
        "'messages' array (the SFT export's form)",
        id="feedback-needs-messages",
    ),
]


@pytest.mark.parametrize(("fmt", "content", "line", "fragment"), BAD_SFT)
def test_bad_sft_file_names_file_line_and_problem(
    tmp_path: Path, fmt: str, content: str | bytes, line: int | None, fragment: str
) -> None:
    path = write(tmp_path, "data.jsonl" if fmt != "koalpaca" or content[:1] in ("{", b"{") else "data.txt", content)
    with pytest.raises(DatasetError) as caught:
        load_sft(path, fmt)  # type: ignore[arg-type]
    message = str(caught.value)
    assert caught.value.line == line
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert fragment in message
    assert "\n" not in message.strip()


def test_missing_file_folder_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="found nothing there"):
        load_sft(tmp_path / "gone.jsonl", "alpaca")
    with pytest.raises(DatasetError, match="found a folder there"):
        load_kto(tmp_path)
    with pytest.raises(DatasetError, match="got 'dolly'"):
        load_sft(write(tmp_path, "a.jsonl", OK_ROW), "dolly")  # type: ignore[arg-type]


def test_alpaca_seed_tasks_load_one_example_per_instance() -> None:
    seed = SHARED_DATA / "alpaca_seed_tasks.jsonl"
    if not seed.is_file():
        pytest.skip(f"{seed} not found; the check needs the shared data folder")
    tasks = [json.loads(line) for line in seed.read_text(encoding="utf-8").splitlines() if line.strip()]
    examples = load_sft(seed, "alpaca")
    assert len(examples) == sum(len(task["instances"]) for task in tasks)
    first = tasks[1]["instances"][0]
    assert turns(examples[1:2]) == [[(U, f"{tasks[1]['instruction']}\n\n{first['input']}"), (A, first["output"])]]


PROMPT = [{"role": "user", "content": "Q?"}]

GOOD_PREFERENCES = [
    pytest.param({"prompt": "Q?", "chosen": "good", "rejected": "bad"}, id="trl-strings"),
    pytest.param(
        PreferenceExample(prompt=[ChatMessage(role="user", content="Q?")], chosen="good", rejected="bad").model_dump(),
        id="dumped-record",
    ),
    pytest.param(
        {
            "prompt": PROMPT,
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        id="trl-conversational",
    ),
    pytest.param(
        {
            "chosen": [*PROMPT, {"role": "assistant", "content": "good"}],
            "rejected": [*PROMPT, {"role": "assistant", "content": "bad"}],
        },
        id="trl-implicit-prompt",
    ),
    pytest.param(
        {
            "conversations": [{"from": "human", "value": "Q?"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        id="llamafactory-sharegpt",
    ),
]


@pytest.mark.parametrize("row", GOOD_PREFERENCES)
def test_load_preferences_reads_each_form(tmp_path: Path, row: dict[str, object]) -> None:
    loaded = load_preferences(write(tmp_path, "p.jsonl", jsonl(row)))
    assert loaded == [PreferenceExample(prompt=[ChatMessage(role="user", content="Q?")], chosen="good", rejected="bad")]


BAD_PREFERENCES = [
    pytest.param({"prompt": "Q?", "chosen": "good"}, "'rejected' answer, got no such field", id="no-rejected"),
    pytest.param({"prompt": "Q?", "chosen": "", "rejected": "bad"}, "text in 'chosen'", id="empty-chosen"),
    pytest.param(
        {"prompt": "Q?", "chosen": [{"role": "user", "content": "x"}], "rejected": "bad"},
        "one assistant message, got messages from: user",
        id="chosen-from-user",
    ),
    pytest.param(
        {"prompt": [{"role": "assistant", "content": "x"}], "chosen": "good", "rejected": "bad"},
        "last message to be from the user",
        id="prompt-ends-with-assistant",
    ),
    pytest.param(
        {
            "chosen": [*PROMPT, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Other?"}, {"role": "assistant", "content": "bad"}],
        },
        "share every message but the last",
        id="implicit-prompts-differ",
    ),
    pytest.param({"chosen": "good", "rejected": "bad"}, "got no prompt", id="strings-without-prompt"),
]


@pytest.mark.parametrize(("row", "fragment"), BAD_PREFERENCES)
def test_bad_preference_rows(tmp_path: Path, row: dict[str, object], fragment: str) -> None:
    path = write(tmp_path, "p.jsonl", jsonl({"prompt": "ok", "chosen": "a", "rejected": "b"}, row))
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}:2: ") as caught:
        load_preferences(path)
    assert fragment in str(caught.value)


GOOD_KTO = [
    pytest.param({"prompt": "Q?", "completion": "good", "label": True}, id="trl-strings"),
    pytest.param(
        {"prompt": PROMPT, "completion": [{"role": "assistant", "content": "good"}], "label": True},
        id="trl-conversational",
    ),
    pytest.param({"messages": [*PROMPT, {"role": "assistant", "content": "good"}], "label": True}, id="messages"),
    pytest.param(
        KTOExample(prompt=[ChatMessage(role="user", content="Q?")], completion="good", desirable=True).model_dump(),
        id="dumped-record",
    ),
    pytest.param(
        {"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "good"}], "kto_tag": True},
        id="llamafactory-kto-tag",
    ),
]


@pytest.mark.parametrize("row", GOOD_KTO)
def test_load_kto_reads_each_form(tmp_path: Path, row: dict[str, object]) -> None:
    loaded = load_kto(write(tmp_path, "k.jsonl", jsonl(row)))
    assert loaded == [KTOExample(prompt=[ChatMessage(role="user", content="Q?")], completion="good", desirable=True)]


BAD_KTO = [
    pytest.param({"prompt": "Q?", "completion": "a", "label": "yes"}, "true or false, got a string", id="label-str"),
    pytest.param({"prompt": "Q?", "completion": "a", "label": 1}, "true or false, got the number 1", id="label-int"),
    pytest.param({"prompt": "Q?", "completion": "a"}, "boolean 'label' (or 'kto_tag', 'desirable')", id="no-label"),
    pytest.param({"prompt": "Q?", "label": True}, "'completion' beside", id="no-completion"),
    pytest.param({"messages": PROMPT, "label": False}, "end with the assistant's completion", id="no-answer"),
]


@pytest.mark.parametrize(("row", "fragment"), BAD_KTO)
def test_bad_kto_rows(tmp_path: Path, row: dict[str, object], fragment: str) -> None:
    path = write(tmp_path, "k.jsonl", jsonl(row))
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}:1: ") as caught:
        load_kto(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("style", ["trl", "llamafactory"])
def test_written_rows_load_back(tmp_path: Path, style: str) -> None:
    prompt = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Q?")]
    pair = PreferenceExample(prompt=prompt, chosen="good", rejected="bad")
    unpaired = [KTOExample(prompt=prompt, completion=text, desirable=text == "good") for text in ("good", "bad")]
    pairs_file = write(tmp_path, "p.jsonl", jsonl(preference_row(pair, style)))  # type: ignore[arg-type]
    kto_file = write(tmp_path, "k.jsonl", jsonl(*(kto_row(e, style) for e in unpaired)))  # type: ignore[arg-type]
    assert load_preferences(pairs_file) == [pair]
    assert load_kto(kto_file) == unpaired


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "at least one message"),
        ([("user", "Q")], "last message to be from the assistant"),
        ([("user", "Q"), ("assistant", " ")], r"message 2 \(assistant\): expected text"),
    ],
)
def test_records_check_their_own_shape(messages: list[tuple[str, str]], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        SFTExample(messages=[ChatMessage(role=r, content=c) for r, c in messages])  # type: ignore[arg-type]


def test_file_sha256_hashes_the_bytes(tmp_path: Path) -> None:
    data = ("한 줄\n" * 300_000).encode()  # larger than one read chunk
    path = write(tmp_path, "big.txt", data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
