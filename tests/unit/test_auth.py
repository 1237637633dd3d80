"""Authentication and roles: JWTs checked against the issuer's keys, static development keys,
each role's reach, and an RM's scope (their own customers and tasks only)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from services.runtime.auth import (
    AuthConfigurationError,
    Authenticator,
    AuthSettings,
    Principal,
    Role,
    customer_reader,
    require,
    rm_scope,
)
from tests.credentials import ADMIN, CHANNEL, KEYS, OPS, RM1, RM2

ISSUER, AUDIENCE = "https://idp.bank.example", "rapport"
ASSIGNED = {"C1": "RM001", "C2": "RM002"}


def a_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING, STRANGER = a_key(), a_key()


def jwks(key: rsa.RSAPrivateKey, kid: str) -> str:
    public = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return orjson.dumps({"keys": [public | {"kid": kid, "use": "sig", "alg": "RS256"}]}).decode()


def token(
    key: rsa.RSAPrivateKey = SIGNING, kid: str = "k1", ttl: float = 300, **claims: Any
) -> str:
    now = time.time()
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ann", "iat": now, "exp": now + ttl}
    return jwt.encode(body | claims, key, algorithm="RS256", headers={"kid": kid})


def app(settings: AuthSettings) -> TestClient:
    """Routes shaped like Rapport's: a summary, a customer's data, an RM's tasks, an admin
    action."""
    api = FastAPI()
    api.state.authenticator = Authenticator(settings)

    async def rm_of(customer_id: str) -> str | None:
        return ASSIGNED.get(customer_id)

    @api.get("/summary", dependencies=[Depends(require(Role.OPS))])
    async def summary() -> dict[str, str]:
        return {"ok": "summary"}

    @api.get(
        "/customers/{customer_id}/data",
        dependencies=[Depends(customer_reader(rm_of, Role.CHANNEL))],
    )
    async def data(customer_id: str) -> dict[str, str]:
        return {"ok": customer_id}

    @api.get("/rm/{rm_id}/tasks")
    async def tasks(
        rm_id: str, principal: Annotated[Principal, Depends(require(Role.RM))]
    ) -> dict[str, str]:
        rm_scope(principal, rm_id, f"the tasks of {rm_id}")
        return {"ok": rm_id}

    @api.post("/campaigns", dependencies=[Depends(require())])
    async def campaigns() -> dict[str, str]:
        return {"ok": "created"}

    return TestClient(api)


def keys_settings() -> AuthSettings:
    return AuthSettings(api_keys=orjson.dumps(KEYS).decode())


def jwt_settings() -> AuthSettings:
    return AuthSettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks=jwks(SIGNING, "k1"))


def test_each_role_reaches_what_it_may_and_no_more() -> None:
    client = app(keys_settings())
    reach = {
        "ops": OPS,
        "channel": CHANNEL,
        "rm1": RM1,
        "admin": ADMIN,
    }
    paths = [
        ("GET", "/summary"),
        ("GET", "/customers/C1/data"),
        ("GET", "/customers/C2/data"),
        ("GET", "/rm/RM001/tasks"),
        ("POST", "/campaigns"),
    ]
    got = {
        who: [client.request(method, path, headers=headers).status_code for method, path in paths]
        for who, headers in reach.items()
    }
    assert got == {
        "ops": [200, 403, 403, 403, 403],
        "channel": [403, 200, 200, 403, 403],
        "rm1": [403, 200, 403, 200, 403],  # C1 is RM001's customer, C2 is not
        "admin": [200, 200, 200, 200, 200],
    }


def test_an_rm_cannot_read_another_rms_tasks_or_customers() -> None:
    client = app(keys_settings())
    assert client.get("/rm/RM002/tasks", headers=RM2).status_code == 200
    refused = client.get("/rm/RM002/tasks", headers=RM1)
    assert refused.status_code == 403 and "RM002" in refused.json()["detail"]
    assert client.get("/customers/C2/data", headers=RM1).status_code == 403
    assert client.get("/customers/UNASSIGNED/data", headers=RM1).status_code == 403


def test_no_credentials_unknown_keys_and_no_configuration_are_401() -> None:
    client = app(keys_settings())
    missing = client.get("/summary")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/summary", headers={"X-API-Key": "guess"}).status_code == 401
    unconfigured = app(AuthSettings(api_keys=None)).get("/summary", headers=OPS)
    assert unconfigured.status_code == 401
    assert "no authentication is configured" in unconfigured.json()["detail"]


def test_a_valid_token_carries_its_roles_and_rm_id() -> None:
    client = app(jwt_settings())
    ops = {"Authorization": f"Bearer {token(roles=['ops'])}"}
    assert client.get("/summary", headers=ops).status_code == 200
    rm = {"Authorization": f"Bearer {token(roles=['rm'], rm_id='RM001')}"}
    assert client.get("/rm/RM001/tasks", headers=rm).status_code == 200
    assert client.get("/rm/RM002/tasks", headers=rm).status_code == 403
    # Roles the service does not know give nothing.
    stranger_roles = {"Authorization": f"Bearer {token(roles=['superuser'])}"}
    assert client.get("/summary", headers=stranger_roles).status_code == 403


@pytest.mark.parametrize(
    ("why", "bad"),
    [
        ("expired", lambda: token(ttl=-120, roles=["ops"])),
        ("wrong audience", lambda: token(aud="another-app", roles=["ops"])),
        ("wrong issuer", lambda: token(iss="https://evil.example", roles=["ops"])),
        ("signed by another key", lambda: token(key=STRANGER, roles=["ops"])),
        ("unknown key id", lambda: token(kid="k9", roles=["ops"])),
        (
            "unsigned",
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60},
                None,
                algorithm="none",
            ),
        ),
        (
            "signed with the public key as an HMAC secret",
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60},
                "not-the-key",
                algorithm="HS256",
                headers={"kid": "k1"},
            ),
        ),
        ("not a token", lambda: "abc.def"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(why: str, bad: Any) -> None:
    answer = app(jwt_settings()).get("/summary", headers={"Authorization": f"Bearer {bad()}"})
    assert answer.status_code == 401, why
    assert answer.json()["detail"], why


def test_a_pem_key_from_a_file_verifies_tokens(tmp_path: Any) -> None:
    pem = SIGNING.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "idp.pem").write_bytes(pem)
    settings = AuthSettings(
        jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_public_key_file=tmp_path / "idp.pem"
    )
    ok = {"Authorization": f"Bearer {token(kid='any', roles=['ops'])}"}
    assert app(settings).get("/summary", headers=ok).status_code == 200


def test_unusable_settings_stop_the_api_at_start() -> None:
    with pytest.raises(AuthConfigurationError, match="ISSUER"):
        Authenticator(AuthSettings(jwt_jwks=jwks(SIGNING, "k1")))
    with pytest.raises(AuthConfigurationError, match="unusable"):
        Authenticator(AuthSettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks="{}"))
    with pytest.raises(AuthConfigurationError, match="API_KEYS"):
        Authenticator(AuthSettings(api_keys='{"k": {"roles": ["root"]}}'))
