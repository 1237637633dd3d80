"""Keyed pseudonyms of counterparties: the only form in which an account at another bank is
stored, logged or published by any service."""

from __future__ import annotations

import hashlib
import hmac


def counterparty_key(bank_code: str, account: str, secret: bytes) -> str:
    """HMAC-SHA256 of the normalised bank code and account number, truncated to 128 bits."""
    normalised = f"{bank_code.strip().upper()}:{account.replace(' ', '').strip()}"
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()[:32]
