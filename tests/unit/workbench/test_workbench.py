"""The workbench's pieces without a browser: which language a request gets, the session
cookie (tampering, expiry, links), and the sign-in and CSRF checks over the app."""

from __future__ import annotations

import re
import time
from dataclasses import replace

from fastapi.testclient import TestClient

from services.runtime.api import load_api
from services.runtime.auth import Principal, Role
from services.runtime.settings import RuntimeSettings
from services.workbench import timeline
from services.workbench.i18n import Formatter, negotiate, zone
from services.workbench.session import Session, SessionCookie, sign_in_link
from tests.credentials import KEYS
from tests.unit.test_auth import AUDIENCE, ISSUER, SIGNING, STRANGER, jwks, token

RM_KEY = next(k for k, grant in KEYS.items() if grant["subject"] == "rm-ray")


def test_the_language_is_the_chosen_one_else_the_browsers_else_the_default() -> None:
    assert negotiate("en-GB,en;q=0.9", "zh-CN", "zh-CN") == "zh-CN"
    assert negotiate("fr-FR, en;q=0.5, zh;q=0.8", None, "en") == "zh-CN"
    assert negotiate("zh-TW, en;q=0.4", None, "zh-CN") == "en"
    assert negotiate("zh-Hant-HK, en;q=0.4", None, "zh-CN") == "en"
    assert negotiate("zh;q=0, en-US", None, "zh-CN") == "en"
    assert negotiate("fr", None, "zh-CN") == "zh-CN"
    assert negotiate(None, "klingon", "en") == "en"


def test_amounts_and_dates_follow_the_viewer() -> None:
    chinese = Formatter("zh-CN", zone("Asia/Shanghai", "UTC"), "CNY")
    english = Formatter("en", zone("Mars/Base", "Europe/London"), "CNY")
    assert chinese.money("12345.6") == "¥12,345.60"
    assert english.money("12345.6") == "CN¥12,345.60"
    assert chinese.when("2026-11-20T16:30:00+00:00") == "2026年11月21日 00:30:00"
    assert english.when("2026-11-20T16:30:00+00:00") == "Nov 20, 2026, 4:30:00\u202fPM"
    assert chinese.term("stage", "at_risk") == "流失风险期"
    assert english.term("cause", "unheard_of") == "unheard of"


def test_a_cookie_altered_made_with_another_key_or_too_old_is_no_session() -> None:
    cookies = SessionCookie(SessionCookie.new_key(), lifetime_seconds=60)
    session = Session().signed_in_as(
        Principal("rm-ray", frozenset({Role.RM}), "RM001"), "key", RM_KEY, time.time() + 60
    )
    value = cookies.dump(session)
    assert cookies.load(value) == session
    assert cookies.load(value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")) is None
    assert SessionCookie(SessionCookie.new_key(), 60).load(value) is None
    stale = SessionCookie.__new__(SessionCookie)
    stale.fernet, stale.lifetime_seconds = cookies.fernet, -1
    assert stale.load(value) is None
    assert not replace(session, expires_at=time.time() - 1).signed_in


def app_client(monkeypatch, key: bytes, links: bool, secure: bool = False) -> TestClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAPPORT_WORKBENCH_SESSION_KEY", key.decode())
    monkeypatch.setenv("RAPPORT_WORKBENCH_SIGN_IN_LINKS", "true" if links else "false")
    # The test client speaks plain http, which a Secure cookie never travels on.
    monkeypatch.setenv("RAPPORT_WORKBENCH_SECURE_COOKIE", "true" if secure else "false")
    # No service answers on these ports: the pages tested here need none.
    return TestClient(load_api("workbench", RuntimeSettings(api_port_base=18990)))


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def test_sign_in_needs_the_forms_token_and_a_known_credential(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secure = app_client(monkeypatch, SessionCookie.new_key(), links=False, secure=True)
    cookie = secure.get("/tasks", follow_redirects=False).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    client = app_client(monkeypatch, SessionCookie.new_key(), links=False)
    to_sign_in = client.get("/tasks", follow_redirects=False)
    assert to_sign_in.headers["location"] == "/signin?next=/tasks"
    # A time zone cookie naming no zone is the default zone, not a broken page.
    client.cookies.set("rapport_tz", "America")
    assert client.get("/signin").status_code == 200
    # Pages, not an API: no OpenAPI document or Swagger UI (it would load from a CDN).
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 404
    token = csrf_of(client.get("/signin").text)
    refused = client.post("/signin", data={"credential": RM_KEY}, follow_redirects=False)
    assert refused.status_code == 403
    unknown = client.post("/signin", data={"csrf": token, "credential": "nope"})
    assert unknown.status_code == 401 and "the API key is not known" in unknown.text
    signed = client.post(
        "/signin",
        data={"csrf": token, "credential": RM_KEY, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    # The token seen before signing in is worth nothing after it.
    after = client.post("/signout", data={"csrf": token}, follow_redirects=False)
    assert after.status_code == 403


def test_sign_in_links_only_when_allowed_and_never_a_cookie(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = SessionCookie.new_key()
    principal = Principal("rm-ray", frozenset({Role.RM}), "RM001")
    link = sign_in_link("http://testserver", key, principal, RM_KEY)
    path = link.removeprefix("http://testserver")
    assert app_client(monkeypatch, key, links=False).get(path).status_code == 403
    expired = sign_in_link("http://testserver", key, principal, RM_KEY, minutes=-1)
    refused = app_client(monkeypatch, key, links=True).get(
        expired.removeprefix("http://testserver")
    )
    assert refused.status_code == 403
    client = app_client(monkeypatch, key, links=True)
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.cookies["rapport_session"]
    # A session's cookie used as a link is refused, and a link's token as a cookie is no session.
    assert client.get(f"/signin/link?token={cookie}").status_code == 403
    fresh = app_client(monkeypatch, key, links=True)
    fresh.cookies.set("rapport_session", link.partition("token=")[2])
    assert fresh.get("/tasks", follow_redirects=False).headers["location"].startswith("/signin")


def test_a_bearer_token_signs_in_until_it_expires(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAPPORT_AUTH_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("RAPPORT_AUTH_JWT_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("RAPPORT_AUTH_JWT_JWKS", jwks(SIGNING, "k1"))
    key = SessionCookie.new_key()
    client = app_client(monkeypatch, key, links=False)
    bearer = token(ttl=120, sub="rita", roles=["rm"], rm_id="RM002")
    csrf = csrf_of(client.get("/signin").text)
    signed = client.post(
        "/signin", data={"csrf": csrf, "credential": bearer}, follow_redirects=False
    )
    assert signed.status_code == 303
    session = SessionCookie(key, 60).load(client.cookies["rapport_session"])
    assert session is not None and (session.subject, session.rm_id) == ("rita", "RM002")
    assert session.credential_headers() == {"Authorization": f"Bearer {bearer}"}
    assert session.expires_at <= time.time() + 121  # the token's expiry, not eight hours
    forged = token(key=STRANGER, sub="mallory", roles=["admin"])
    refused = client.post("/signin", data={"csrf": session.csrf, "credential": forged})
    assert refused.status_code == 401 and "the bearer token is not valid" in refused.text


def test_the_timeline_tells_the_history_else_where_the_customer_stands() -> None:
    fmt = Formatter("en", zone("UTC", "UTC"), "CNY")
    profile = {
        "stage": "at_risk",
        "since": "2026-05-22T09:00:00+00:00",
        "strategy": {"description": "retention call"},
        "open_signals": [
            {
                "raised_at": "2026-05-22T09:00:00+00:00",
                "cause": "disengagement",
                "explanation": {"en": "quiet for 45 days"},
            }
        ],
    }
    history = [
        {
            "type": "stage.changed",
            "occurred_at": "2026-05-22T09:00:00+00:00",
            "stage": "at_risk",
            "previous_stage": "growth",
            "explanation": {"en": "churn score 0.60", "zh-CN": "流失评分0.60"},
        },
        {
            "type": "churn_signal.raised",
            "occurred_at": "2026-05-22T09:00:00+00:00",
            "cause": "disengagement",
            "explanation": {"en": "quiet for 45 days"},
        },
        {
            "type": "stage.changed",
            "occurred_at": "2026-04-01T09:00:00+00:00",
            "stage": "acquisition",
            "previous_stage": None,
            "reason": "account opened",
        },
    ]
    told = timeline.of(fmt, profile, history, [], [], [], [], [])
    assert [(line.what, line.detail) for line in told] == [
        ("Stage: growth → at risk", "churn score 0.60"),
        ("Churn signal raised: disengagement", "quiet for 45 days"),
        ("Stage: acquisition (first)", "account opened"),
    ]
    # Without a history yet: the stage since when, and the open signals.
    standing = timeline.of(fmt, profile, [], [], [], [], [], [])
    assert [(line.kind, line.detail) for line in standing] == [
        ("stage", "retention call"),
        ("signal", "quiet for 45 days"),
    ]
