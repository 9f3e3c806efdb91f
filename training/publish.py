"""Publishing: upload an adapter folder or a merged model folder to a Hugging Face repo, private by default.

The token travels only as the `Authorization` header that huggingface_hub adds to each request. It is never
put into a URL, a git remote or a file, and while publishing runs every log record is scrubbed of it, so a
debug log of huggingface_hub or its HTTP client cannot print it. Errors from the Hub are rewritten without it
(and without anything that looks like a bearer token) before they reach the user.

Endpoint: `endpoint` (DOMAINBOT_HF_ENDPOINT) when given, else huggingface_hub's own HF_ENDPOINT, else
https://huggingface.co. Plain http is accepted only for this machine (a local stand-in Hub), since anything
else would send the token unencrypted.

domainbot keeps huggingface_hub offline so that loading a model never downloads; publishing is the one
deliberate upload, so it lifts offline mode for its own requests and restores it afterwards.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import mmap
import re
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from pydantic import SecretStr

from bot import __version__
from bot.errors import DomainbotError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
MASK = "***"
# OWNER/NAME as the Hub spells repo ids.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Whatever follows these is a credential, whoever's it is.
CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\"(),;\]}]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\s)[^\s'\"(),;\]}]+"),
    re.compile(r"()\bhf_[A-Za-z0-9]{16,}"),
)

FolderKind = Literal["adapter", "model"]


@dataclass(frozen=True)
class PublishResult:
    """What was uploaded, and where: the repo, its visibility, and the commit that holds the files."""

    repo_id: str
    repo_url: str
    commit_url: str
    revision: str
    private: bool | None
    kind: FolderKind
    files: list[str]


def publish(
    folder: Path,
    repo_id: str,
    token: SecretStr | str,
    private: bool = True,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Create `repo_id` (private unless `private` is False) if needed and upload `folder` to it in one commit.

    A repo that already exists keeps its visibility; if it is public while a private upload was asked for,
    nothing is uploaded.
    """
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not secret.strip():
        raise DomainbotError("HF_TOKEN is empty. Set HF_TOKEN in the environment to a Hugging Face write token.")
    folder = Path(folder)
    kind = folder_kind(folder)
    check_repo_id(repo_id)
    files = files_to_upload(folder)
    refuse_files_holding(secret, folder, files)

    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import constants as hub_constants

    target = check_endpoint(endpoint or hub_constants.ENDPOINT or DEFAULT_ENDPOINT)
    api = HfApi(endpoint=target, token=secret, library_name="domainbot", library_version=__version__)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in files]
    message = commit_message or f"Upload {kind} {folder.name} with domainbot"
    with scrubbed_logs(secret), _hub_online(), warnings.catch_warnings(record=True) as caught:
        try:
            repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            is_private = _check_visibility(api, repo_id, private)
            commit = api.create_commit(repo_id, operations, commit_message=message, repo_type="model")
        except DomainbotError:
            raise
        except Exception as exc:  # huggingface_hub, its HTTP client and the OS each raise their own types
            raise hub_error(exc, secret, repo_id, target) from None
    for warning in caught:
        log.warning("Hugging Face Hub: %s", scrub(str(warning.message), secret))
    return PublishResult(
        repo_id=repo_id,
        repo_url=str(repo_url),
        commit_url=commit.commit_url,
        revision=commit.oid,
        private=is_private,
        kind=kind,
        files=files,
    )


def folder_kind(folder: Path) -> FolderKind:
    """'adapter' for a peft adapter folder, 'model' for a model folder; anything else is refused."""
    if not folder.is_dir():
        raise DomainbotError(f"{folder} is not a folder. Expected an adapter folder or a merged model folder.")
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return "model"
    raise DomainbotError(
        f"{folder} is neither an adapter folder (adapter_config.json) nor a model folder (config.json and "
        "safetensors weights). Publish what `domainbot merge` or a training round wrote."
    )


def check_repo_id(repo_id: str) -> None:
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise DomainbotError(
            f"Expected a Hugging Face repo id OWNER/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}."
        )


def check_endpoint(endpoint: str) -> str:
    """The endpoint without a trailing slash; refused if it could leak the token or carries credentials."""
    parts = urlsplit(endpoint)
    if parts.username or parts.password or parts.query or parts.fragment:
        # Not echoed: the credentials in it are exactly what must not be printed.
        raise DomainbotError(
            "The Hugging Face endpoint must be a plain http(s) URL without credentials, query or fragment; "
            "check DOMAINBOT_HF_ENDPOINT and HF_ENDPOINT."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainbotError(
            f"Expected the Hugging Face endpoint to be an http(s) URL like {DEFAULT_ENDPOINT}, got {endpoint!r}."
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise DomainbotError(
            f"The Hugging Face endpoint {endpoint} is plain http, which would send HF_TOKEN unencrypted. "
            "Use an https URL (plain http is accepted only for this machine)."
        )
    return endpoint.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def files_to_upload(folder: Path) -> list[str]:
    """Every regular file under `folder`, as repo paths; hidden files and folders (.env, .git) stay home."""
    names = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        names.append(relative.as_posix())
    if not names:
        raise DomainbotError(f"{folder} holds no files to publish.")
    return names


def refuse_files_holding(secret: str, folder: Path, files: list[str]) -> None:
    """Stop before uploading a file that contains the token, a common way tokens end up public."""
    needle = secret.encode("utf-8")
    for name in files:
        path = folder / name
        if path.stat().st_size < len(needle):
            continue
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as content:
            found = content.find(needle) != -1
        if found:
            raise DomainbotError(
                f"{path} contains HF_TOKEN; publishing it would make the token public. Remove the token from "
                "the file (or the file from the folder) and publish again."
            )


def scrub(text: str, secret: str) -> str:
    """`text` without the token (plain, URL-encoded or base64) and without anything shaped like a credential."""
    if secret:
        forms = {secret, quote(secret, safe=""), quote_plus(secret), base64.b64encode(secret.encode()).decode()}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, MASK)
    for pattern in CREDENTIAL_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


def hub_error(exc: BaseException, secret: str, repo_id: str, endpoint: str) -> DomainbotError:
    """One line for the user, saying what the Hub answered and what to do; never the token."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    # The Hub's own words (huggingface_hub keeps them apart from its status line) say the most.
    server_message = str(getattr(exc, "server_message", None) or "").strip()
    detail = scrub("; ".join(server_message.splitlines()) if server_message else _first_line(exc), secret)
    owner = repo_id.split("/")[0]
    if status == 401:
        text = (
            f"The Hub at {endpoint} did not accept HF_TOKEN (401 Unauthorized). Expected a valid token with write "
            "access; create one under Settings > Access Tokens on the Hub and set HF_TOKEN to it."
        )
    elif status == 403:
        text = (
            f"HF_TOKEN may not create or write {repo_id} (403 Forbidden). Use a token with write access to "
            f"{owner}, or publish under your own name."
        )
    elif status is not None:
        text = f"Publishing to {repo_id} at {endpoint} failed: the Hub answered {status} ({detail})."
    else:
        text = f"Publishing to {repo_id} at {endpoint} failed: {detail}. Check the network and the endpoint."
    return DomainbotError(scrub(text, secret))


def _check_visibility(api: HfApi, repo_id: str, private: bool) -> bool | None:
    """The repo's visibility; a public repo where a private upload was asked for stops the upload."""
    is_private = api.model_info(repo_id).private
    if private and is_private is False:
        raise DomainbotError(
            f"Repo {repo_id} already exists and is public, and publishing is private by default; nothing was "
            "uploaded. Choose another --repo, make the repo private on the Hub, or pass --public."
        )
    return is_private


@contextmanager
def _hub_online() -> Iterator[None]:
    from huggingface_hub import constants as hub_constants

    offline = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = offline


@contextmanager
def scrubbed_logs(secret: str) -> Iterator[None]:
    """Every log record made meanwhile, by any logger in any thread, is created without the token.

    Scrubbing at record creation covers handlers and loggers alike (a filter on a logger misses records its
    child loggers emit), including the traceback text of records that carry an exception.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub_record(record, secret)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def _scrub_record(record: logging.LogRecord, secret: str) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string is logging's own problem to report, not a leak
        message = str(record.msg)
    record.msg, record.args = scrub(message, secret), None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"), secret)
        record.exc_info = None
    if record.stack_info:
        record.stack_info = scrub(record.stack_info, secret)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
