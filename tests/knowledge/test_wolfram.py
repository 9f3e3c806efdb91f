import logging
from collections.abc import Iterator

import pytest

from knowledge.wolfram import WolframClient
from tests.wolfram_fake import DID_YOU_MEAN, ERROR, FakeWolfram, fake_wolfram, success

APP_ID = "DEMO-" + "7" * 8  # built at run time; an obviously fake id


@pytest.fixture()
def wolfram() -> Iterator[FakeWolfram]:
    with fake_wolfram() as fake:
        yield fake


def client(fake: FakeWolfram, **options: object) -> WolframClient:
    return WolframClient(APP_ID, url=fake.url, **options)  # type: ignore[arg-type]


def test_success_gives_the_primary_result(wolfram: FakeWolfram) -> None:
    wolfram.answers["12 times 7"] = success("12×7", "84")
    answer = client(wolfram).ask("12 times 7")
    assert (answer.status, answer.text) == ("ok", "84")
    assert answer.pods == {"Input": "12×7", "Result": "84"}
    assert wolfram.requests[0]["appid"] == [APP_ID]


def test_no_result_and_did_you_mean(wolfram: FakeWolfram) -> None:
    wolfram.answers["captial of frnace"] = DID_YOU_MEAN
    assert client(wolfram).ask("nothing to see").status == "no_result"
    answer = client(wolfram).ask("captial of frnace")
    assert (answer.status, answer.did_you_mean) == ("no_result", ["capital of France"])


def test_api_error_is_a_status_without_the_app_id(wolfram: FakeWolfram, caplog: pytest.LogCaptureFixture) -> None:
    wolfram.answers["x"] = ERROR
    with caplog.at_level(logging.INFO):
        answer = client(wolfram).ask("x")
    assert answer.status == "error"
    assert "Invalid appid" in str(answer.message)
    assert APP_ID not in str(answer.message) + caplog.text


def test_http_failure_and_timeout_degrade(wolfram: FakeWolfram, caplog: pytest.LogCaptureFixture) -> None:
    wolfram.status = 500
    with caplog.at_level(logging.INFO):
        failed = client(wolfram).ask("2+2")
    assert failed.status == "error"
    assert APP_ID not in str(failed.message) + caplog.text
    wolfram.status, wolfram.delay = 200, 1.0
    assert client(wolfram, timeout=0.2).ask("2+2").status == "timeout"


def test_answers_are_cached_and_failures_are_not(wolfram: FakeWolfram) -> None:
    wolfram.answers["2+2"] = success("2+2", "4")
    wolfram_client = client(wolfram)
    assert not wolfram_client.ask("2+2").cached
    assert wolfram_client.ask("  2+2 ").cached
    assert len(wolfram.requests) == 1
    wolfram.status = 500
    wolfram_client.ask("3+3")
    wolfram_client.ask("3+3")
    assert len(wolfram.requests) == 3


def test_the_query_is_masked_before_it_leaves(wolfram: FakeWolfram) -> None:
    masked = client(wolfram, mask=lambda text: text.replace("alice@example.com", "[EMAIL]"))
    masked.ask("mail alice@example.com the value of 2+2")
    assert wolfram.requests[0]["input"] == ["mail [EMAIL] the value of 2+2"]


def test_without_an_app_id_nothing_is_sent(wolfram: FakeWolfram) -> None:
    answer = WolframClient(None, url=wolfram.url).ask("2+2")
    assert answer.status == "disabled"
    assert wolfram.requests == []


async def _inside_event_loop(wolfram_client: WolframClient) -> str:
    return wolframclient_status(wolfram_client)


def wolframclient_status(wolfram_client: WolframClient) -> str:
    return wolfram_client.ask("2+2").status


def test_works_when_called_from_a_running_event_loop(wolfram: FakeWolfram) -> None:
    import asyncio

    wolfram.answers["2+2"] = success("2+2", "4")
    assert asyncio.run(_inside_event_loop(client(wolfram))) == "ok"
