"""Static API keys every test session configures (RAPPORT_AUTH_API_KEYS), one caller per role,
and the headers that present them."""

from __future__ import annotations

import orjson

KEYS = {
    "test-admin-key-0123": {"subject": "admin-ann", "roles": ["admin"]},
    "test-ops-key-0123": {"subject": "ops-olga", "roles": ["ops"]},
    "test-channel-key-0123": {"subject": "mobile-app", "roles": ["channel"]},
    "test-rm1-key-0123": {"subject": "rm-ray", "roles": ["rm"], "rm_id": "RM001"},
    "test-rm2-key-0123": {"subject": "rm-rita", "roles": ["rm"], "rm_id": "RM002"},
}
API_KEYS_JSON = orjson.dumps(KEYS).decode()


def _as(subject: str) -> dict[str, str]:
    (key,) = [k for k, grant in KEYS.items() if grant["subject"] == subject]
    return {"X-API-Key": key}


ADMIN = _as("admin-ann")
OPS = _as("ops-olga")
CHANNEL = _as("mobile-app")
RM1 = _as("rm-ray")
RM2 = _as("rm-rita")
