"""Publishing to a stand-in Hugging Face Hub: what arrives, how private it is, and where the token goes."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.errors import DomainbotError
from tests.helpers import build_tiny_model, make_adapter
from tests.hub_fake import FakeHub
from training.publish import check_endpoint, publish, scrub, scrubbed_logs

REPO = "someone/tiny-merged"


@pytest.fixture
def token() -> str:
    """Made up per test, so no literal credential sits in the sources."""
    return f"test-{secrets.token_hex(20)}"


@pytest.fixture
def hub(token: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    # Xet uploads go to a separate content store; the legacy LFS protocol is what this stand-in speaks.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # huggingface_hub's most talkative mode: every request also logged as a curl command.
    monkeypatch.setattr(constants, "HF_DEBUG", True)
    with FakeHub(token) as fake:
        yield fake


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    return caplog


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("publish") / "tiny-merged")


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_token_only_in_authorization(hub: FakeHub, token: str) -> None:
    assert hub.requests, "no request reached the stand-in Hub"
    forms = {token, quote(token, safe=""), base64.b64encode(token.encode()).decode()}
    for request in hub.requests:
        where = f"{request.method} {request.path}"
        for form in forms:
            assert form not in request.path and form not in request.query, where
            assert form.encode() not in request.body, where
            assert all(form not in value for name, value in request.headers.items() if name != "authorization"), where
        assert request.headers.get("authorization") in (None, f"Bearer {token}"), where


def assert_token_not_logged(logs: pytest.LogCaptureFixture, token: str) -> None:
    assert logs.records, "nothing was logged, so the check below would prove nothing"
    assert token not in logs.text
    assert all(token not in record.getMessage() for record in logs.records)


def test_model_folder_arrives_byte_identical_in_a_private_repo(
    hub: FakeHub, token: str, model_folder: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    result = publish(model_folder, REPO, token, endpoint=hub.url)

    repo = hub.repos[REPO]
    assert repo.private is True and result.private is True
    assert repo.files == folder_files(model_folder)
    assert result.kind == "model" and sorted(result.files) == sorted(repo.files)
    assert result.revision == repo.commits[-1] and result.commit_url.endswith(result.revision)
    # The weights took the LFS route: batch call, upload without credentials, verify.
    assert any(r.method == "PUT" and r.path.startswith("/lfs-upload/") for r in hub.requests)
    assert_token_only_in_authorization(hub, token)
    assert_token_not_logged(debug_logs, token)
    assert any("/api/repos/create" in record.getMessage() for record in debug_logs.records)


def test_adapter_folder_publishes_without_its_hidden_files(
    hub: FakeHub, token: str, model_folder: Path, tmp_path: Path
) -> None:
    adapter = tmp_path / "round-1"
    make_adapter(model_folder, adapter)
    (adapter / ".env").write_text(f"HF_TOKEN={token}\n")
    (adapter / ".cache").mkdir()
    (adapter / ".cache" / "notes").write_text("local only")

    result = publish(adapter, "someone/round-1", token, endpoint=hub.url)

    assert result.kind == "adapter"
    uploaded = hub.repos["someone/round-1"].files
    assert set(uploaded) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert uploaded["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    assert_token_only_in_authorization(hub, token)


def test_public_publish_and_a_second_commit_to_the_same_repo(
    hub: FakeHub, token: str, model_folder: Path
) -> None:
    first = publish(model_folder, REPO, token, private=False, endpoint=hub.url)
    second = publish(model_folder, REPO, token, private=False, endpoint=hub.url, commit_message="again")

    assert hub.repos[REPO].private is False and first.private is False
    assert hub.repos[REPO].commits == [first.revision, second.revision] and first.revision != second.revision


def test_existing_public_repo_takes_no_private_upload(hub: FakeHub, token: str, model_folder: Path) -> None:
    hub.add_repo(REPO, private=False)

    with pytest.raises(DomainbotError, match=r"already exists and is public.*--public"):
        publish(model_folder, REPO, token, endpoint=hub.url)
    assert hub.repos[REPO].files == {}
    assert not any("/commit/" in r.path or "lfs" in r.path for r in hub.requests)


@pytest.mark.parametrize(
    ("path_part", "status", "message"),
    [
        ("/api/repos/create", 401, "did not accept HF_TOKEN"),
        ("/api/repos/create", 403, "may not create or write someone/tiny-merged"),
        # (The upload-mode check retries 5xx answers with growing pauses, so it fails here with a 4xx.)
        ("/preupload/", 422, "the Hub answered 422"),
        ("/commit/", 500, r"the Hub answered 500 \(storage is down \(got Bearer \*\*\*\)\)"),
    ],
)
def test_hub_errors_become_one_line_without_the_token(
    hub: FakeHub,
    token: str,
    model_folder: Path,
    debug_logs: pytest.LogCaptureFixture,
    path_part: str,
    status: int,
    message: str,
) -> None:
    # The stand-in quotes the Authorization header back in its error, as careless servers do.
    hub.fail(path_part, status, "storage is down", echo_authorization=True)

    with pytest.raises(DomainbotError, match=message) as caught:
        publish(model_folder, REPO, token, endpoint=hub.url)

    text = str(caught.value)
    assert token not in text and "\n" not in text
    assert caught.value.__suppress_context__  # the original error, which holds the token, is not shown
    assert_token_not_logged(debug_logs, token)


def test_a_wrong_token_is_refused_by_the_hub(hub: FakeHub, model_folder: Path) -> None:
    wrong = f"test-{secrets.token_hex(20)}"
    with pytest.raises(DomainbotError, match="401") as caught:
        publish(model_folder, REPO, wrong, endpoint=hub.url)
    assert wrong not in str(caught.value)
    assert REPO not in hub.repos


def test_a_file_holding_the_token_is_never_uploaded(hub: FakeHub, token: str, model_folder: Path, tmp_path: Path):
    adapter = tmp_path / "leaky"
    make_adapter(model_folder, adapter)
    (adapter / "training_args.json").write_text(f'{{"hub_token": "{token}"}}')

    with pytest.raises(DomainbotError, match=r"training_args\.json contains HF_TOKEN") as caught:
        publish(adapter, REPO, token, endpoint=hub.url)
    assert token not in str(caught.value)
    assert hub.requests == []


@pytest.mark.parametrize(
    ("repo_id", "folder_kind", "message"),
    [
        ("no-owner", "model", "Expected a Hugging Face repo id OWNER/NAME"),
        ("a/b/c", "model", "Expected a Hugging Face repo id OWNER/NAME"),
        ("someone/../x", "model", "Expected a Hugging Face repo id OWNER/NAME"),
        (REPO, "empty", "neither an adapter folder"),
        (REPO, "missing", "is not a folder"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    hub: FakeHub, token: str, model_folder: Path, tmp_path: Path, repo_id: str, folder_kind: str, message: str
) -> None:
    folders = {"model": model_folder, "empty": tmp_path, "missing": tmp_path / "missing"}
    with pytest.raises(DomainbotError, match=message):
        publish(folders[folder_kind], repo_id, token, endpoint=hub.url)
    assert hub.requests == []


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://hub.example.org", "plain http, which would send HF_TOKEN unencrypted"),
        ("ftp://hub.example.org", "Expected the Hugging Face endpoint to be an http"),
        ("https://user:s3cret@hub.example.org", "without credentials"),
        ("https://hub.example.org/?token=s3cret", "without credentials"),
    ],
)
def test_endpoints_that_could_leak_the_token_are_refused(endpoint: str, message: str) -> None:
    with pytest.raises(DomainbotError, match=message) as caught:
        check_endpoint(endpoint)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("endpoint", ["https://huggingface.co/", "http://127.0.0.1:8080", "http://localhost:9"])
def test_https_and_this_machine_are_accepted(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint.rstrip("/")


def test_scrub_removes_every_spelling_of_the_token(token: str) -> None:
    encoded = base64.b64encode(token.encode()).decode()
    text = f"url?t={quote(token, safe='')} b64={encoded} raw={token} Authorization: Bearer other-secret-value"
    cleaned = scrub(text, token)
    assert token not in cleaned and encoded not in cleaned and "other-secret-value" not in cleaned
    assert cleaned.count("***") == 4


def test_logs_made_while_publishing_are_scrubbed(token: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with scrubbed_logs(token):
        # A logger of its own: the Telegram front end turns httpx down to warnings for the whole process.
        logging.getLogger("tests.publish.http").debug("headers %s", {"authorization": f"Bearer {token}"})
        try:
            raise RuntimeError(f"request to /api?token={token} failed")
        except RuntimeError:
            logging.getLogger("huggingface_hub.utils._http").exception("upload failed")
    logging.getLogger("after").debug("plain %s", token)  # outside the block: logged as is

    inside = caplog.records[:2]
    assert caplog.records[0].getMessage() == "headers {'authorization': 'Bearer ***'}"
    assert all(token not in caplog.handler.format(record) for record in inside)
    assert "RuntimeError: request to /api?token=***" in caplog.handler.format(inside[1])
    assert token in caplog.records[2].getMessage()
