"""Webhook delivery against a real local HTTP server: signatures, retries with backoff and
jitter, permanent refusals and unreachable receivers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.notify.delivery import Delivery, backoff, deliver, sign

SECRET = b"webhook-secret"


class Receiver:
    """A webhook receiver answering with the given status codes in turn (the last repeats)."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.codes[min(len(receiver.requests), len(receiver.codes)) - 1]
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    found = Receiver(request.param)
    yield found
    found.server.shutdown()


def run(url: str, attempts: int = 4) -> tuple[Delivery, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def go() -> Delivery:
        async with httpx.AsyncClient(timeout=2) as client:
            return await deliver(
                client, url, SECRET, b'{"n": 1}', "evt-1", attempts, 0.5, 30, sleep, lambda: 1.0
            )

    return asyncio.run(go()), waits


@pytest.mark.parametrize("receiver", [[503, 500, 200]], indirect=True)
def test_retries_until_the_receiver_takes_it_with_a_valid_signature(receiver: Receiver) -> None:
    result, waits = run(receiver.url)
    assert result == Delivery("sent", 3)
    assert waits == [0.5, 1.0]  # exponential, at the jitter's top
    headers, body = receiver.requests[-1]
    expected = hmac.new(
        SECRET, headers["X-Rapport-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-Rapport-Signature"] == f"sha256={expected}"
    assert headers["Idempotency-Key"] == "evt-1" and headers["X-Rapport-Delivery-Attempt"] == "3"


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refusal_is_final_at_once(receiver: Receiver) -> None:
    result, waits = run(receiver.url)
    assert (result.status, result.attempts, waits) == ("failed", 1, [])
    assert result.error is not None and "HTTP 400" in result.error


@pytest.mark.parametrize("receiver", [[503]], indirect=True)
def test_a_receiver_that_keeps_failing_fails_after_the_last_attempt(receiver: Receiver) -> None:
    result, waits = run(receiver.url, attempts=3)
    assert (result.status, result.attempts, result.error) == ("failed", 3, "HTTP 503")
    assert len(receiver.requests) == 3 and len(waits) == 2


def test_an_unreachable_receiver_fails_with_the_reason() -> None:
    result, _ = run("http://127.0.0.1:9/hook", attempts=2)
    assert result.status == "failed" and result.error is not None and "Connect" in result.error


def test_jitter_spreads_waits_below_a_capped_exponential() -> None:
    assert backoff(1, 0.5, 30, lambda: 1.0) == 0.5
    assert backoff(10, 0.5, 30, lambda: 1.0) == 30
    assert backoff(3, 0.5, 30, lambda: 0.25) == 0.5
    assert sign(SECRET, "1", b"x") != sign(SECRET, "2", b"x")
