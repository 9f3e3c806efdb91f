"""POST /v1/answer over a real socket: JSON answers, server-sent events, failures, disconnects, concurrency."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.pipeline import UNVERIFIED_MARK
from tests.bot.http.conftest import Server, sse_events

QUESTION = "How long is the grinder warranty?"


def test_answer_as_json_with_citations_log_and_history(server: Server) -> None:
    server.model.enqueue(["Grinders carry a two-year warranty from purchase [1]."])
    with server.client() as client:
        first = client.post("/v1/answer", json={"question": QUESTION, "user": "u7"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["text"] == "Grinders carry a two-year warranty from purchase [1]."
        assert body["citations"][0]["source"].endswith("warranty.md")
        assert body["conversation_id"].startswith("http-")
        logged = server.pipeline.feedback.get(body["interaction_id"])
        assert (logged.channel, logged.user_id, logged.answer) == ("http", "u7", body["text"])

        server.model.enqueue(["It starts on the date of purchase [1]."])
        follow = client.post("/v1/answer", json={"question": "From when?", "conversation_id": body["conversation_id"]})
        assert follow.json()["conversation_id"] == body["conversation_id"]
    history = [m["content"] for m in server.model.calls[1]]
    assert QUESTION in history and body["text"] in history


def test_max_tokens_is_honoured_up_to_the_server_limit(server: Server) -> None:
    server.model.enqueue(["one two three four five six"])
    with server.client() as client:
        short = client.post("/v1/answer", json={"question": QUESTION, "max_tokens": 3}).json()
    assert short["raw_text"] == "one two three" and short["finish_reason"] == "length"
    assert server.pipeline.params.max_new_tokens == 400  # a request changes only its own answer


def test_streamed_pieces_then_the_checked_answer_then_done(server: Server) -> None:
    # The second sentence is not in the knowledge base: Inform marks it, so the final text differs from the pieces.
    raw = "Grinders carry a two-year warranty from purchase [1]. They were designed by Leonardo in Milan."
    server.model.enqueue([raw])
    request = {"question": QUESTION, "stream": True}
    with server.client() as client, client.stream("POST", "/v1/answer", json=request) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r.iter_lines()))
    names = [name for name, _ in events]
    assert names[-2:] == ["answer", "done"] and set(names[:-2]) == {"piece"} and len(names) > 3
    pieces = "".join(json.loads(data)["text"] for name, data in events if name == "piece")
    answer = json.loads(events[-2][1])
    assert pieces == raw == answer["raw_text"]
    assert UNVERIFIED_MARK in answer["text"] and answer["text"] != pieces
    assert events[-1][1] == "[DONE]"


def test_pipeline_failure_is_a_short_500_and_an_error_event(server: Server) -> None:
    server.model.failures = 2
    with server.client() as client:
        failed = client.post("/v1/answer", json={"question": QUESTION})
        with client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as r:
            events = list(sse_events(r.iter_lines()))
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    assert "Traceback" not in failed.text and "/opt/secret" not in failed.text
    assert [name for name, _ in events] == ["error", "done"]
    assert json.loads(events[0][1])["error"]["type"] == "server_error"


def test_a_client_leaving_mid_stream_stops_the_generation(make_server: Callable[..., Any]) -> None:
    with make_server(workers=1) as server:
        server.model.delay = 0.02
        server.model.enqueue([" ".join(f"word{i}" for i in range(300))])
        with server.client() as client:
            with client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as r:
                for name, _ in sse_events(r.iter_lines()):
                    if name == "piece":
                        break  # leaving the block closes the connection mid-stream
            assert server.model.closed_early.wait(5), "the generation went on after the client left"
            assert server.model.pieces_sent < 100
            # The only worker is free again: the next question is answered.
            server.model.delay = 0.0
            again = client.post("/v1/answer", json={"question": QUESTION}, timeout=10)
        assert again.status_code == 200 and again.json()["text"].startswith("Echo:")


def test_a_client_leaving_a_plain_request_stops_the_generation(server: Server) -> None:
    server.model.delay = 0.02
    server.model.enqueue([" ".join(f"word{i}" for i in range(300))])
    # The client gives up waiting and closes the connection.
    with server.client() as client, contextlib.suppress(httpx.ReadTimeout):
        client.post("/v1/answer", json={"question": QUESTION}, timeout=0.5)
    assert server.model.closed_early.wait(5), "the generation went on after the client left"
    assert server.model.pieces_sent < 100


def test_answers_for_several_conversations_are_generated_at_once(server: Server) -> None:
    # Each generation waits at the barrier until all four have started: they only finish if they run at once.
    server.model.barrier = threading.Barrier(4)
    results: dict[int, httpx.Response] = {}

    def ask(i: int) -> None:
        with server.client() as client:
            results[i] = client.post("/v1/answer", json={"question": f"question number {i}?"})

    started = time.monotonic()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert time.monotonic() - started < 10
    assert sorted(results) == [0, 1, 2, 3]
    for i, response in results.items():
        assert response.status_code == 200, response.text
        assert response.json()["raw_text"].endswith(f"question number {i}?")


def test_questions_of_one_conversation_are_answered_in_turn(server: Server) -> None:
    server.model.delay = 0.02
    server.model.enqueue(["The first answer takes a while to write out in full."])
    results: list[httpx.Response] = []

    def ask(question: str) -> None:
        with server.client() as client:
            results.append(client.post("/v1/answer", json={"question": question, "conversation_id": "shared"}))

    first = threading.Thread(target=ask, args=("First question?",))
    first.start()
    time.sleep(0.2)  # the first answer is being written when the second question arrives
    ask("Second question?")
    first.join(20)
    assert [r.status_code for r in results] == [200, 200]
    # The second answer waited for the first, so its prompt holds the whole first exchange.
    second_prompt = [m["content"] for m in server.model.calls[1]]
    assert "First question?" in second_prompt
    assert "The first answer takes a while to write out in full." in second_prompt
