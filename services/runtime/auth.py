"""Who may call Rapport's APIs: OAuth2 bearer JWTs from the bank's identity provider, or static
API keys for development, mapped to roles; and the RM scope (an RM sees their own customers and
tasks only).

Roles:
- `ops`: summaries (stage counts, the referral funnel, rewards totals, task summary, uplift);
- `rm`: their own customers (assigned by `customer.updated`'s `rm_id`) and their own tasks;
- `channel`: the bank's customer-facing back end acting for a customer (codes, referrals,
  rewards, redemptions, preferences, notifications), for any customer;
- `admin`: everything, including reviews, adjustments, campaigns and the audit trail.

Every route except /healthz, /readyz and /metrics requires one of them. With nothing
configured, every request is refused (401): there is no open mode.
"""

# No `from __future__ import annotations` here: FastAPI reads these dependencies' annotations
# at run time, and some name local variables (the roles a closure checks).
import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr, TypeAdapter
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.runtime import db


class Role(StrEnum):
    OPS = "ops"
    RM = "rm"
    CHANNEL = "channel"
    ADMIN = "admin"


class ApiKey(BaseModel):
    """What a static API key stands for."""

    subject: Annotated[str, Field(min_length=1, max_length=64)]
    roles: list[Role]
    rm_id: Annotated[str, Field(max_length=64)] | None = None


API_KEYS = TypeAdapter(dict[str, ApiKey])


class AuthSettings(BaseSettings):
    """`RAPPORT_AUTH_*`. JWTs are checked against the issuer's public keys, given as a JWKS
    document or a PEM public key, each inline or as a file (a mounted secret)."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_AUTH_", extra="ignore")

    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks: SecretStr | None = None
    jwt_jwks_file: Path | None = None
    jwt_public_key: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_algorithms: list[str] = ["RS256", "ES256"]
    jwt_leeway_seconds: int = Field(30, ge=0, le=300)
    # Where the token keeps the roles (a list of strings) and the RM's id.
    roles_claim: str = "roles"
    rm_id_claim: str = "rm_id"
    # Development: {"<key>": {"subject": "...", "roles": ["admin"], "rm_id": null}} as JSON.
    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    roles: frozenset[Role]
    rm_id: str | None = None
    # When the credential stops being valid (a token's `exp`, seconds since the epoch); None
    # for a static key. A session built on it (the workbench's) ends no later.
    expires_at: float | None = None

    def has(self, *roles: Role) -> bool:
        return Role.ADMIN in self.roles or bool(self.roles & set(roles))


class AuthConfigurationError(ValueError):
    """The settings name keys that cannot be used."""


def _secret(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    if file is not None:
        try:
            return file.read_text()
        except OSError as exc:
            raise AuthConfigurationError(f"RAPPORT_AUTH_{name}_FILE: {exc}") from exc
    return value.get_secret_value() if value is not None else None


class Authenticator:
    """Turns a request's credentials into a principal, or refuses it."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.keys: dict[str, Any] = {}
        jwks = _secret(settings.jwt_jwks, settings.jwt_jwks_file, "JWT_JWKS")
        pem = _secret(settings.jwt_public_key, settings.jwt_public_key_file, "JWT_PUBLIC_KEY")
        try:
            if jwks:
                for key in jwt.PyJWKSet.from_json(jwks).keys:
                    self.keys[key.key_id or ""] = key.key
            if pem:
                self.keys[""] = serialization.load_pem_public_key(pem.encode())
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise AuthConfigurationError(f"the JWT verification keys are unusable: {exc}") from exc
        if self.keys and not (settings.jwt_issuer and settings.jwt_audience):
            raise AuthConfigurationError(
                "JWT keys are set, so RAPPORT_AUTH_JWT_ISSUER and RAPPORT_AUTH_JWT_AUDIENCE must be"
            )
        raw_keys = _secret(settings.api_keys, settings.api_keys_file, "API_KEYS")
        try:
            self.api_keys = API_KEYS.validate_json(raw_keys) if raw_keys else {}
        except ValueError as exc:
            raise AuthConfigurationError(f"RAPPORT_AUTH_API_KEYS is not valid: {exc}") from exc

    @property
    def configured(self) -> bool:
        return bool(self.keys or self.api_keys)

    def from_api_key(self, given: str) -> Principal:
        for key, grant in self.api_keys.items():
            if hmac.compare_digest(key.encode(), given.encode()):
                return Principal(grant.subject, frozenset(grant.roles), grant.rm_id)
        raise _unauthorised("the API key is not known")

    def from_token(self, token: str) -> Principal:
        if not self.keys:
            raise _unauthorised("bearer tokens are not accepted: no JWT keys are configured")
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.get(header.get("kid") or "") or self.keys.get("")
            if key is None:
                raise _unauthorised("the token's key id is not one of the issuer's keys")
            claims = jwt.decode(
                token,
                key,
                algorithms=self.settings.jwt_algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.settings.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise _unauthorised(f"the bearer token is not valid: {exc}") from exc
        roles = claims.get(self.settings.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        known = frozenset(Role(r) for r in roles if r in Role.__members__.values())
        rm_id = claims.get(self.settings.rm_id_claim)
        return Principal(
            str(claims["sub"]), known, str(rm_id) if rm_id else None, float(claims["exp"])
        )


def _unauthorised(why: str) -> HTTPException:
    return HTTPException(401, detail=why, headers={"WWW-Authenticate": "Bearer"})


_BEARER = HTTPBearer(auto_error=False, description="A JWT of the bank's identity provider")
_API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="A static key (development only)"
)


def authenticated(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    api_key: Annotated[str | None, Depends(_API_KEY)],
) -> Principal:
    """The caller, from `Authorization: Bearer <jwt>` or `X-API-Key`; 401 otherwise."""
    authenticator: Authenticator = request.app.state.authenticator
    if not authenticator.configured:
        raise _unauthorised(
            "no authentication is configured: set RAPPORT_AUTH_JWT_* (or, in development, "
            "RAPPORT_AUTH_API_KEYS); see docs/security.md"
        )
    if bearer is not None:
        return authenticator.from_token(bearer.credentials)
    if api_key:
        return authenticator.from_api_key(api_key)
    raise _unauthorised("this needs a bearer token (Authorization: Bearer ...) or an X-API-Key")


Caller = Annotated[Principal, Depends(authenticated)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency: the caller, when they hold one of `roles` (admin holds them all); 403
    otherwise."""

    def check(principal: Caller) -> Principal:
        if not principal.has(*roles):
            raise HTTPException(
                403,
                detail=f"this needs the role {' or '.join(r.value for r in roles) or 'admin'}; "
                f"{principal.subject} has {', '.join(sorted(principal.roles)) or 'none'}",
            )
        return principal

    return check


def rm_scope(principal: Principal, assignee: str | None, what: str) -> None:
    """Unless an admin, the caller may only act on what is assigned to their RM id."""
    if Role.ADMIN in principal.roles:
        return
    if principal.rm_id is None or assignee != principal.rm_id:
        raise HTTPException(403, detail=f"{what} is not assigned to {principal.subject}")


def customer_reader(
    rm_of: Callable[[str], Awaitable[str | None]], *roles: Role
) -> Callable[..., Awaitable[Principal]]:
    """A dependency for `/customers/{customer_id}/...` routes: callers with one of `roles`
    (or admin) see any customer; an RM sees the customers assigned to them."""
    allowed = require(*roles, Role.RM)

    async def check(
        customer_id: str, principal: Annotated[Principal, Depends(allowed)]
    ) -> Principal:
        if not principal.has(*roles):
            rm_scope(principal, await rm_of(customer_id), f"customer {customer_id!r}")
        return principal

    return check


def assigned_rm(url: str) -> Callable[[str], Awaitable[str | None]]:
    """The RM a customer is assigned to, as the latest `customer.updated` (in event time) that
    named one said. The notify service keeps the customers' profiles, so its table is the
    directory every API asks."""

    def lookup(customer_id: str) -> str | None:
        query = text(
            "SELECT fields FROM notify_profile_changes WHERE customer_id = :customer "
            "ORDER BY effective_at DESC, event_id DESC"
        )
        try:
            with db.get_engine(url).connect() as connection:
                changes = connection.execute(query, {"customer": customer_id}).scalars().all()
        except SQLAlchemyError:
            return None  # no directory yet: nobody is assigned
        for fields in changes:
            if isinstance(fields, str | bytes):
                fields = orjson.loads(fields)
            if isinstance(fields, dict) and fields.get("rm_id"):
                return str(fields["rm_id"])
        return None

    async def rm_of(customer_id: str) -> str | None:
        return await asyncio.to_thread(lookup, customer_id)

    return rm_of


DEVELOPMENT_RM = "RM001"


def development_keys() -> dict[str, dict[str, Any]]:
    """A fresh set of random API keys, one per role (for `rapport up` and the demo)."""
    import secrets

    return {
        secrets.token_urlsafe(24): {
            "subject": f"dev-{role.value}",
            "roles": [role.value],
            # The simulator's first RM, so that the development RM has customers and tasks.
            "rm_id": DEVELOPMENT_RM if role is Role.RM else None,
        }
        for role in Role
    }


def key_for(keys_file: Path, role: Role) -> str | None:
    """The development key of a role in a keys file written by `rapport up`."""
    try:
        keys = API_KEYS.validate_json(keys_file.read_bytes())
    except (OSError, ValueError):
        return None
    return next((k for k, grant in keys.items() if grant.roles == [role]), None)


def write_development_keys(keys_file: Path) -> None:
    """Create the keys file (owner-only) unless it exists."""
    if keys_file.exists():
        return
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.touch(mode=0o600)
    keys_file.write_bytes(orjson.dumps(development_keys(), option=orjson.OPT_INDENT_2))
