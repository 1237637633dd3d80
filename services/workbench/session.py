"""The signed-in session, kept in the browser as one cookie encrypted and signed with the
workbench's key (Fernet), HttpOnly and SameSite=Strict. It carries the credential the person
signed in with, since the workbench asks each service's API as that person; the browser's
script can neither read the cookie nor the credential in it."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import orjson
from cryptography.fernet import Fernet, InvalidToken

from services.runtime.auth import Principal

COOKIE = "rapport_session"
Scheme = Literal["key", "bearer"]


@dataclass(frozen=True)
class Session:
    """Who is signed in (nobody yet, before the sign-in form is sent) and the token every form
    of this session must carry back (CSRF)."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    subject: str | None = None
    roles: tuple[str, ...] = ()
    rm_id: str | None = None
    scheme: Scheme | None = None
    credential: str | None = None
    expires_at: float = 0.0
    # "link": a sign-in link (`rapport demo` prints them), good only for signing in; a cookie
    # copied into a link, or a link's token put in the cookie, is refused.
    purpose: Literal["session", "link"] = "session"

    @property
    def signed_in(self) -> bool:
        return self.subject is not None and time.time() < self.expires_at

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)

    def signed_in_as(
        self, principal: Principal, scheme: Scheme, credential: str, until: float
    ) -> Session:
        # A new CSRF token at sign-in: one seen before it is worth nothing after.
        return replace(
            Session(),
            subject=principal.subject,
            roles=tuple(sorted(principal.roles)),
            rm_id=principal.rm_id,
            scheme=scheme,
            credential=credential,
            expires_at=until,
        )

    def credential_headers(self) -> dict[str, str]:
        if self.scheme == "bearer" and self.credential:
            return {"Authorization": f"Bearer {self.credential}"}
        if self.scheme == "key" and self.credential:
            return {"X-API-Key": self.credential}
        return {}


class SessionCookie:
    """Turns a session into the cookie's value and back; a cookie that was altered, made with
    another key or is older than the session's lifetime is no session."""

    def __init__(self, key: bytes, lifetime_seconds: int) -> None:
        self.fernet = Fernet(key)
        self.lifetime_seconds = lifetime_seconds

    @staticmethod
    def new_key() -> bytes:
        return Fernet.generate_key()

    def dump(self, session: Session) -> str:
        return self.fernet.encrypt(orjson.dumps(asdict(session))).decode()

    def load(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            raw = orjson.loads(self.fernet.decrypt(value.encode(), ttl=self.lifetime_seconds))
            raw["roles"] = tuple(raw.get("roles") or ())
            return Session(**raw)
        except (InvalidToken, ValueError, TypeError):
            return None


def sign_in_link(
    base_url: str, key: bytes, principal: Principal, credential: str, minutes: int = 60
) -> str:
    """A link that signs `principal` in to the workbench at `base_url` (development: the
    workbench accepts links only with RAPPORT_WORKBENCH_SIGN_IN_LINKS)."""
    link = replace(
        Session().signed_in_as(principal, "key", credential, time.time() + minutes * 60),
        purpose="link",
    )
    return f"{base_url}/signin/link?token={SessionCookie(key, minutes * 60).dump(link)}"
