"""The openai backend against an OpenAI-compatible stand-in on 127.0.0.1: requests, streaming, bad servers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot.model.backend import GenerationParams, GenerationResult, Message
from bot.model.openai_backend import OpenAIBackend, OpenAIServerError, TokenCounter, display_url, estimate_tokens
from tests.openai_fake import FakeOpenAI, Reply, fake_openai, unused_url

KEY = "sk-test-" + "7" * 12
MESSAGES: list[Message] = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "How long is the warranty?"},
]


@pytest.fixture()
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def backend_for(url: str, **options: Any) -> OpenAIBackend:
    options.setdefault("timeout", 2.0)
    options.setdefault("connect_timeout", 2.0)
    return OpenAIBackend(url, **options)


def run(backend: OpenAIBackend, params: GenerationParams | None = None) -> tuple[list[str], GenerationResult]:
    result = GenerationResult()
    pieces = list(backend.stream(MESSAGES, params or GenerationParams(max_new_tokens=50), result))
    return pieces, result


def test_streams_a_chat_answer_with_the_mapped_parameters(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Two", " years", "."], prompt_tokens=23))
    backend = backend_for(fake.url)
    backend.connect()
    params = GenerationParams(max_new_tokens=40, temperature=0.7, top_p=0.8, repetition_penalty=1.2, seed=5)
    pieces, result = run(backend, params)
    assert pieces == ["Two", " years", "."]
    assert (result.prompt_tokens, result.new_tokens, result.finish_reason) == (23, 3, "eos")
    assert 0 <= result.timings["first_token"] <= result.timings["generate"]
    (sent,) = fake.completions
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "served-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 40,
        "temperature": 0.7,
        "top_p": 0.8,
        "seed": 5,
        "repetition_penalty": 1.2,
        "messages": [dict(m) for m in MESSAGES],
    }
    # The server's own window (vLLM's max_model_len) bounds prompts when none is configured.
    assert backend.context_window() == 4096 and backend.model_name == "served-model"


def test_greedy_requests_leave_out_the_penalty_and_send_stop_strings(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Yes"], finish_reason="stop", stop_reason="###"), Reply(["a", "b"], finish_reason="length"))
    backend = backend_for(fake.url, model="served-model")
    _, stopped = run(backend, GenerationParams(max_new_tokens=10, stop=("###",)))
    _, cut = run(backend, GenerationParams(max_new_tokens=2))
    assert (stopped.finish_reason, cut.finish_reason) == ("stop", "length")
    first = fake.completions[0].body or {}
    assert first["stop"] == ["###"] and first["temperature"] == 0.0 and first["top_p"] == 1.0
    assert "repetition_penalty" not in first and "seed" not in first


def test_without_a_usage_chunk_the_counts_are_estimated(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["One", " two", " three"], usage=False))
    _, result = run(backend_for(fake.url, model="served-model"))
    assert result.prompt_tokens == estimate_tokens(MESSAGES)
    assert result.new_tokens == 3


def test_text_prompt_formats_use_the_completions_endpoint(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Paris"]))
    pieces, result = run(backend_for(fake.url, model="served-model", prompt_format="alpaca"))
    assert pieces == ["Paris"] and result.finish_reason == "eos"
    (sent,) = fake.completions
    assert sent.path == "/v1/completions" and sent.body is not None
    assert sent.body["prompt"].endswith("### Instruction:\nHow long is the warranty?\n\n### Response:\n")
    assert "messages" not in sent.body


def test_a_server_that_ignores_stream_is_read_as_one_piece(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["Whole", " answer"], fault="json"))
    pieces, result = run(backend_for(fake.url, model="served-model"))
    assert pieces == ["Whole answer"] and result.finish_reason == "eos"


def test_the_api_key_travels_only_in_the_authorization_header(fake: FakeOpenAI) -> None:
    fake.api_key = KEY
    fake.enqueue("Two years.")
    backend = backend_for(fake.url, api_key=KEY)
    backend.connect()
    assert "".join(run(backend)[0]) == "Two years."
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        others = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert KEY not in request.path + str(request.body) + str(others)


def test_a_wrong_key_is_one_clear_error_without_the_key(fake: FakeOpenAI) -> None:
    fake.api_key = KEY
    with pytest.raises(OpenAIServerError) as caught:
        backend_for(fake.url, api_key="sk-wrong-" + "1" * 10).connect()
    message = str(caught.value)
    assert f"server at {fake.url} refused the request on /models (HTTP 401" in message
    assert "Incorrect API key" in message and "DOMAINBOT_OPENAI_API_KEY" in message
    assert "sk-wrong" not in message


def test_credentials_in_the_url_never_reach_a_message() -> None:
    url = unused_url().replace("http://", "http://admin:hunter2@")
    with pytest.raises(OpenAIServerError) as caught:
        backend_for(url).connect()
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)
    assert display_url(url) == url.replace("admin:hunter2@", "")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply([], fault="status", status=500, message="CUDA out of memory"), "with HTTP 500: CUDA out of memory"),
        (
            Reply([], fault="status", status=404, message="The model `served-model` does not exist."),
            "HTTP 404: The model `served-model` does not exist. Check DOMAINBOT_OPENAI_MODEL",
        ),
        (Reply([], fault="html"), "with HTTP 502: an HTML page"),
        (Reply([], fault="garbage"), "malformed stream on chat/completions: expected JSON after 'data:', got 'this"),
        (Reply([], fault="wrong_shape"), 'without choices: expected {"choices"'),
        (Reply(["late"], fault="slow", delay=1.0), "sent nothing on chat/completions for 0.3 s"),
        (Reply([], fault="no_finish"), "ended its stream on chat/completions without a finish_reason"),
        (Reply(["a"], fault="cut", after=0), "closed the connection on chat/completions mid-reply"),
    ],
    ids=["http-500", "unknown-model", "html-502", "not-json", "wrong-shape", "timeout", "no-finish", "cut-at-start"],
)
def test_a_bad_reply_before_any_text_is_one_clear_error(fake: FakeOpenAI, reply: Reply, expected: str) -> None:
    fake.enqueue(reply)
    backend = backend_for(fake.url, model="served-model", api_key=KEY, timeout=0.3)
    with pytest.raises(OpenAIServerError) as caught:
        run(backend)
    message = str(caught.value)
    assert message.startswith(f"The OpenAI-compatible server at {fake.url} ")
    assert expected in message and "\n" not in message and KEY not in message


def test_a_server_that_is_down_is_named_with_what_to_do() -> None:
    url = unused_url()
    with pytest.raises(OpenAIServerError) as caught:
        backend_for(url, model="m").connect()
    assert f"The OpenAI-compatible server at {url} cannot be reached" in str(caught.value)
    assert "check DOMAINBOT_OPENAI_URL" in str(caught.value)


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_stream_cut_in_the_middle_keeps_what_arrived(
    fake: FakeOpenAI, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.enqueue(Reply(["Two", " years", " of", " cover"], fault=fault, after=2, delay=1.0))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="bot.model.openai_backend"):
        pieces, result = run(backend_for(fake.url, model="served-model", timeout=0.3))
    assert pieces == ["Two", " years"]
    assert (result.finish_reason, result.new_tokens) == ("interrupted", 2)
    assert "broke off after 2 pieces" in caplog.text


def test_connect_checks_the_model_is_served(fake: FakeOpenAI) -> None:
    fake.models = [{"id": "llama-8b"}, {"id": "support-v2"}]
    with pytest.raises(
        OpenAIServerError, match="does not serve the adapter 'support-v3'; it serves llama-8b, support-v2"
    ):
        backend_for(fake.url, model="support-v3", adapter="support-v3").connect()
    backend = backend_for(fake.url, context=1024)
    backend.connect()
    assert (backend.model_name, backend.context_window()) == ("llama-8b", 1024)


def test_a_url_that_is_not_the_api_is_named(fake: FakeOpenAI) -> None:
    with pytest.raises(OpenAIServerError, match=r"has no /models \(HTTP 404.*usually ends in /v1"):
        backend_for(fake.url.removesuffix("/v1")).connect()


@pytest.mark.parametrize("url", ["ftp://host/v1", "gpu-box:8000", "http://host/v1?key=abc"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    from bot.errors import DomainbotError

    with pytest.raises(DomainbotError, match="DOMAINBOT_OPENAI_URL must") as caught:
        OpenAIBackend(url)
    assert "abc" not in str(caught.value)


def test_the_budget_leaves_room_for_the_prompt(fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(["ok"]))
    backend = backend_for(fake.url, model="served-model", context=256)
    params = GenerationParams(max_new_tokens=1000)
    run(backend, params)
    body = fake.completions[0].body or {}
    assert body["max_tokens"] == 256 - estimate_tokens(MESSAGES)


def test_prompts_are_counted_with_the_local_tokenizer_when_there_is_one(tiny_model_dir: Any) -> None:
    from transformers import AutoTokenizer

    counter = TokenCounter(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rendered = tokenizer.apply_chat_template([dict(m) for m in MESSAGES], add_generation_prompt=True, tokenize=False)
    assert counter.count(MESSAGES, "chat") == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    broken = TokenCounter(tiny_model_dir / "missing")
    assert broken.count(MESSAGES, "chat") == estimate_tokens(MESSAGES) and not broken.exact
