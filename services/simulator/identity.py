"""Who is who in a simulated feed: the bank's own code, the other banks, and the account
holders' names and birthdays (derived from the customer id, not drawn from the generator, so
adding them changed no other draw)."""

from __future__ import annotations

import hashlib

OWN_BANK = "RAPPORTBANK"
OTHER_BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB", "SPDB")
SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou")
GIVEN_NAMES = ("Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Tao", "Ping", "Hui", "Jun")


def holder_name(customer_id: str) -> str:
    """The account holder's name, derived from the id like the birthday (no generator draw)."""
    h = int(hashlib.sha256(b"name:" + customer_id.encode()).hexdigest()[:8], 16)
    return f"{SURNAMES[h % len(SURNAMES)]} {GIVEN_NAMES[h // len(SURNAMES) % len(GIVEN_NAMES)]}"


def birthday(customer_id: str) -> str:
    """A birthday derived from the id, not drawn from the generator: adding it changed no other
    draw, so the population is the one earlier figures were measured on."""
    h = int(hashlib.sha256(customer_id.encode()).hexdigest()[:8], 16)
    return f"{1950 + h % 50}-{1 + h // 50 % 12:02d}-{1 + h // 600 % 28:02d}"
