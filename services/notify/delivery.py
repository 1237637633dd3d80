"""Optional webhook delivery of notifications, one URL per channel: HMAC-signed payloads,
retries with exponential backoff and full jitter, and a verdict (sent or failed) for each.

The receiver checks `X-Rapport-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<X-Rapport-Timestamp>.<body>` under the shared secret, and may refuse old timestamps to stop
replays. `Idempotency-Key` is the notification's event id: a retried delivery that did arrive
the first time is recognised."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff(attempt: int, base: float, cap: float, draw: Callable[[], float]) -> float:
    """Full jitter: a uniform wait up to base x 2^(attempt-1), capped, so that many retrying
    deliveries do not hit a recovering receiver in step."""
    return float(draw() * min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Delivery:
    """The verdict on one notification."""

    status: str  # "sent" or "failed"
    attempts: int
    error: str | None = None


# Worth retrying: the receiver is down, slow, overloaded or failing; other 4xx will not change.
_RETRYABLE_4XX = frozenset({408, 425, 429})


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    secret: bytes,
    body: bytes,
    idempotency_key: str,
    attempts: int,
    base: float,
    cap: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    draw: Callable[[], float] = random.random,
) -> Delivery:
    """POST the body until the receiver answers 2xx, at most `attempts` times."""
    error = "no attempt made"
    for attempt in range(1, attempts + 1):
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Rapport-Timestamp": timestamp,
            "X-Rapport-Signature": sign(secret, timestamp, body),
            "X-Rapport-Delivery-Attempt": str(attempt),
            "Idempotency-Key": idempotency_key,
        }
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            if response.is_success:
                return Delivery("sent", attempt)
            error = f"HTTP {response.status_code}"
            if response.is_client_error and response.status_code not in _RETRYABLE_4XX:
                return Delivery("failed", attempt, f"{error}: the receiver refused it")
        if attempt < attempts:
            await sleep(backoff(attempt, base, cap, draw))
    return Delivery("failed", attempts, error)
