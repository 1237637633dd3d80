"""Keyed pseudonyms of counterparties: the only form in which an account at another bank is
stored, logged or published by any service."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def counterparty_key(bank_code: str, account: str, secret: bytes) -> str:
    """HMAC-SHA256 of the normalised bank code and account number, truncated to 128 bits."""
    normalised = f"{bank_code.strip().upper()}:{account.replace(' ', '').strip()}"
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()[:32]


def name_key(name: str, secret: bytes) -> str | None:
    """HMAC-SHA256 of a person's name as feeds differ in writing it: compatibility-normalised,
    case-folded, without punctuation, its words in sorted order ("WEI, Li" and "Li Wei" give
    the same key). None for a name with no letters."""
    text = unicodedata.normalize("NFKC", name).casefold()
    words = "".join(c if c.isalnum() else " " for c in text).split()
    if not words:
        return None
    normalised = " ".join(sorted(words))
    return hmac.new(secret, b"name:" + normalised.encode(), hashlib.sha256).hexdigest()[:32]
