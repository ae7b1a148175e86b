"""A refusal or a 500 is answered only while no answer has started: once the app has
sent its response's start, the error goes on up and nothing is sent twice."""

from typing import Any

import pytest

from lapor.runtime.http import BodyLimit, ErrorsAsJson

SCOPE = {"type": "http", "method": "POST", "path": "/upload", "headers": []}
BIG = {"type": "http.request", "body": b"x" * 100, "more_body": False}


async def _receive() -> dict[str, Any]:
    return BIG


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def starts(self) -> list[int]:
        return [m["status"] for m in self.messages if m["type"] == "http.response.start"]


async def _starts_then(receive: Any, send: Any, fail: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await fail(receive)


async def _read(receive: Any) -> None:
    await receive()


async def _bug(_receive: Any) -> None:
    raise RuntimeError("mid-body")


async def test_an_oversized_body_read_before_the_answer_is_refused_with_413() -> None:
    async def app(_scope: Any, receive: Any, _send: Any) -> None:
        await receive()

    sent = Sent()
    await BodyLimit(app, max_bytes=10)(SCOPE, _receive, sent)
    assert sent.starts() == [413]


async def test_an_oversized_body_read_after_the_answer_started_is_not_answered_again() -> None:
    async def app(_scope: Any, receive: Any, send: Any) -> None:
        await _starts_then(receive, send, _read)

    sent = Sent()
    with pytest.raises(Exception, match="larger than 10 bytes"):
        await BodyLimit(app, max_bytes=10)(SCOPE, _receive, sent)
    assert sent.starts() == [200]


async def test_a_bug_before_the_answer_gets_a_500() -> None:
    async def app(_scope: Any, receive: Any, _send: Any) -> None:
        await _bug(receive)

    sent = Sent()
    await ErrorsAsJson(app)(SCOPE, _receive, sent)
    assert sent.starts() == [500]


async def test_a_bug_after_the_answer_started_is_not_answered_again() -> None:
    async def app(_scope: Any, receive: Any, send: Any) -> None:
        await _starts_then(receive, send, _bug)

    sent = Sent()
    with pytest.raises(RuntimeError, match="mid-body"):
        await ErrorsAsJson(app)(SCOPE, _receive, sent)
    assert sent.starts() == [200]
