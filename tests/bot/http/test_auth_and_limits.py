"""Keys, body limits and the one error shape; the key never shows up in a response or a log line."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.errors import DomainbotError
from bot.http import HttpConfig, check_bind
from tests.bot.http.conftest import Server, keyed
from tests.helpers import run_cli

QUESTION = {"question": "How long is the grinder warranty?"}


def made_up_key() -> str:
    return secrets.token_urlsafe(24)


def assert_error(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == kind and error["message"]
    assert set(error) == {"type", "message", "param", "code"}
    return error


def test_api_and_admin_keys(make_server: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    api_key, admin_key = made_up_key(), made_up_key()
    caplog.set_level(logging.DEBUG)
    with make_server(**keyed(api_key=api_key, admin_key=admin_key)) as server:
        responses = []
        with server.client() as anonymous:
            responses.append(missing := anonymous.post("/v1/answer", json=QUESTION))
            assert_error(missing, 401, "authentication_error")
            assert missing.headers["www-authenticate"] == "Bearer"
            assert anonymous.get("/healthz").status_code == 200  # monitors need no key
            assert anonymous.get("/openapi.json").status_code == 200
        with server.client(api_key + "x") as wrong:
            responses.append(bad := wrong.post("/v1/answer", json=QUESTION))
            assert_error(bad, 401, "authentication_error")
            responses.append(wrong.get("/v1/models"))
            assert responses[-1].status_code == 401
        with server.client(api_key) as user:
            responses.append(user.post("/v1/answer", json=QUESTION))
            assert responses[-1].status_code == 200
            responses.append(no_admin := user.get("/v1/kb/documents"))
            assert_error(no_admin, 401, "authentication_error")
        with server.client(admin_key) as admin:
            assert admin.get("/v1/kb/documents").status_code == 200
            assert admin.post("/v1/answer", json=QUESTION).status_code == 200  # the admin key opens the API too
    everything = " ".join(r.text + str(r.headers) for r in responses) + caplog.text
    assert api_key not in everything and admin_key not in everything


def test_without_an_admin_key_the_knowledge_base_endpoints_are_off(server: Server) -> None:
    with server.client() as client:
        error = assert_error(client.get("/v1/kb/documents"), 403, "permission_error")
    assert "DOMAINBOT_ADMIN_KEY" in error["message"]


@pytest.mark.parametrize(
    ("host", "key", "insecure", "allowed"),
    [
        ("127.0.0.1", None, False, True),
        ("::1", None, False, True),
        ("localhost", None, False, True),
        ("0.0.0.0", None, False, False),
        ("example.internal", None, False, False),
        ("0.0.0.0", "k", False, True),
        ("0.0.0.0", None, True, True),
    ],
)
def test_no_api_key_means_loopback_only(
    host: str, key: str | None, insecure: bool, allowed: bool, tmp_path: Any
) -> None:
    config = HttpConfig(uploads_dir=tmp_path, **(keyed(api_key=key) if key else {}))
    if allowed:
        check_bind(host, config, insecure)
    else:
        with pytest.raises(DomainbotError, match=r"DOMAINBOT_API_KEY.*--insecure"):
            check_bind(host, config, insecure)


def test_serve_refuses_an_open_public_address_before_loading_anything(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "serve", "--host", "0.0.0.0", "--port", "8099")
    assert code == 1 and out == ""
    assert "Refusing to listen on 0.0.0.0 without an API key" in err and "--insecure" in err


@pytest.fixture()
def small_server(make_server: Callable[..., Any]) -> Iterator[Server]:
    with make_server(max_body_bytes=2048, max_document_bytes=4096, **keyed(admin_key="admin")) as server:
        yield server


def test_oversized_bodies_are_refused_before_they_are_read(small_server: Server) -> None:
    big = {"question": "x" * 5000}
    with small_server.client() as client:
        declared = assert_error(client.post("/v1/answer", json=big), 413, "request_too_large")
        assert "2,048 bytes" in declared["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"question": "'
            for _ in range(100):
                yield b"x" * 100
            yield b'"}'

        assert_error(client.post("/v1/answer", content=chunked()), 413, "request_too_large")
        assert client.post("/v1/answer", json={"question": "small?"}).status_code == 200
    with small_server.client("admin") as admin:
        upload = {"file": ("big.md", b"# Big\n\n" + b"word " * 2000, "text/markdown")}
        error = assert_error(admin.post("/v1/kb/documents", files=upload), 413, "request_too_large")
        assert error["param"] == "file" and "DOMAINBOT_MAX_DOCUMENT_MB" in error["message"]
        huge = {"file": ("huge.md", b"word " * 40_000, "text/markdown")}  # past the multipart allowance too
        assert_error(admin.post("/v1/kb/documents", files=huge), 413, "request_too_large")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/answer", {}, "question"),
        ("/v1/answer", {"question": ""}, "question"),
        ("/v1/answer", {"question": "hi", "colour": "red"}, "colour"),
        ("/v1/answer", {"question": "hi", "temperature": 9}, "temperature"),
        ("/v1/feedback", {"interaction_id": "x", "rating": 7}, "rating"),
        ("/v1/feedback", {"interaction_id": "x"}, None),
        ("/v1/chat/completions", {"model": "m", "messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ],
)
def test_invalid_requests_name_the_field(server: Server, path: str, body: dict[str, Any], param: str | None) -> None:
    with server.client() as client:
        error = assert_error(client.post(path, json=body), 422, "invalid_request_error")
    assert error["param"] == param


def test_malformed_json_and_unknown_paths(server: Server) -> None:
    with server.client() as client:
        broken = client.post("/v1/answer", content=b'{"question": ', headers={"content-type": "application/json"})
        error = assert_error(broken, 422, "invalid_request_error")
        assert error["code"] == "json_invalid" and "not valid JSON" in error["message"]
        assert_error(client.get("/v1/nowhere"), 404, "not_found_error")
        assert_error(client.get("/v1/answer"), 405, "invalid_request_error")
