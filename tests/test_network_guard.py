import socket

import pytest

from tests.conftest import NetworkAccessError, is_loopback


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (("127.0.0.1", 80), True),
        (("::1", 80, 0, 0), True),
        (("localhost", 8080), True),
        ("/tmp/some.sock", True),
        (("93.184.216.34", 443), False),
        (("huggingface.co", 443), False),
        (("10.0.0.1", 80), False),
    ],
)
def test_loopback_predicate(address: object, allowed: bool) -> None:
    assert is_loopback(address) is allowed


def test_guard_blocks_before_any_packet_is_sent() -> None:
    # The guard raises inside connect() before the real call, so this sends nothing anywhere.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(NetworkAccessError):
        sock.connect(("93.184.216.34", 443))


def test_guard_allows_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
