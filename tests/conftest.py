"""Fixtures shared by every test: no network, no settings leaking in from the machine, a tiny Llama."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import SECRET_FIELDS, env_name
from tests.helpers import build_tiny_model

# Nothing may reach a hub: these hold for the whole session, before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

SECRET_VARIABLES = {env_name(field) for field in SECRET_FIELDS}
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def is_loopback(address: Any) -> bool:
    """True for a Unix socket path or an IPv4/IPv6 loopback address tuple."""
    if isinstance(address, str | bytes):
        return True  # AF_UNIX
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkAccessError(RuntimeError):
    """Raised when a test opens a connection to anything but this machine."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that connects to a non-loopback address."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if not is_loopback(address):
            raise NetworkAccessError(f"test tried to reach {address!r}; only 127.0.0.1 is allowed in tests")
        return real_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
        if not is_loopback(address):
            raise NetworkAccessError(f"test tried to reach {address!r}; only 127.0.0.1 is allowed in tests")
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No DOMAINBOT_* or secret variables from the machine; a fresh data folder; no stray .env."""
    for name in list(os.environ):
        if name.startswith("DOMAINBOT_") or name in SECRET_VARIABLES:
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("DOMAINBOT_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    yield data_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def tiny_settings(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings that load the tiny model in float32 on the CPU, greedy, no repetition penalty."""
    from bot.config import load_settings

    monkeypatch.setenv("DOMAINBOT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DOMAINBOT_DEVICE", "cpu")
    monkeypatch.setenv("DOMAINBOT_DTYPE", "float32")
    monkeypatch.setenv("DOMAINBOT_REPETITION_PENALTY", "1.0")
    monkeypatch.setenv("DOMAINBOT_MAX_NEW_TOKENS", "12")
    return load_settings()
