"""A WolframAlpha v2 stand-in on 127.0.0.1 serving the real XML shapes, recording every request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from tests.loopback import QuietHandler, serve

HEADER = "<?xml version='1.0' encoding='UTF-8'?>\n"


def success(input_text: str, result: str) -> str:
    return (
        HEADER + "<queryresult success='true' error='false' numpods='2' datatypes='Math' timedout='' "
        "timing='0.5' parsetiming='0.1' parsetimedout='false' recalculate='' id='q1' version='2.6'>"
        "<pod title='Input' scanner='Identity' id='Input' position='100' error='false' numsubpods='1'>"
        f"<subpod title=''><plaintext>{input_text}</plaintext></subpod></pod>"
        "<pod title='Result' scanner='Simplification' id='Result' position='200' error='false' numsubpods='1' "
        f"primary='true'><subpod title=''><plaintext>{result}</plaintext></subpod></pod>"
        "</queryresult>"
    )


NO_RESULT = HEADER + "<queryresult success='false' error='false' numpods='0' version='2.6'></queryresult>"
DID_YOU_MEAN = (
    HEADER + "<queryresult success='false' error='false' numpods='0' version='2.6'>"
    "<didyoumeans count='1'><didyoumean score='0.42' level='medium'>capital of France</didyoumean>"
    "</didyoumeans></queryresult>"
)
ERROR = (
    HEADER + "<queryresult success='false' error='true' numpods='0' version='2.6'>"
    "<error><code>1</code><msg>Invalid appid</msg></error></queryresult>"
)


@dataclass
class FakeWolfram:
    """Answers are looked up by the query text; `delay` slows every answer; `status` forces an HTTP status."""

    answers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    status: int = 200
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    url: str = ""


@contextmanager
def fake_wolfram() -> Iterator[FakeWolfram]:
    fake = FakeWolfram()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            fake.requests.append(query)
            time.sleep(fake.delay)
            body = fake.answers.get(query.get("input", [""])[0], NO_RESULT).encode()
            content_type = "text/xml; charset=utf-8"
            if fake.status != 200:  # as a failing gateway answers: an HTML page
                body, content_type = b"<html><body>Internal Server Error</body></html>", "text/html"
            self.send_body(fake.status, content_type, body)

    with serve(Handler) as server:
        fake.url = f"http://127.0.0.1:{server.server_address[1]}/v2/query"
        yield fake
        server.server_close()
