"""What every page of the workbench shares: who is asking (the session cookie, its credential
checked again at each request), in which language and zone, the guard that lets a page or a
form through (signed in, CSRF token, roles), rendering with the pages' security headers, and
the routes of signing in and out. The pages themselves are in pages.py."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.runtime.auth import Authenticator, AuthSettings, Principal
from services.workbench.client import ServiceError
from services.workbench.config import WorkbenchSettings
from services.workbench.i18n import LOCALES, Formatter, negotiate, zone
from services.workbench.session import COOKIE, Scheme, Session, SessionCookie

HERE = Path(__file__).parent
STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
LANGUAGE_COOKIE = "rapport_lang"
ZONE_COOKIE = "rapport_tz"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
audit = logging.getLogger("rapport.workbench.audit")


@dataclass
class View:
    """One request as a page sees it: who, in which language and zone, and a form's fields."""

    request: Request
    session: Session
    fmt: Formatter
    fresh: bool  # the session is new: its cookie must be set
    form: dict[str, str]


Handler = Callable[[View], Awaitable[Response]]
Route = Callable[[Request], Awaitable[Response]]


def safe_next(target: str | None) -> str:
    # Only a path of this site: "//evil.example" or "https://..." would leave it.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


class Site:
    """The session, language and rendering of the workbench's pages."""

    def __init__(self, config: WorkbenchSettings) -> None:
        self.config = config
        key = config.session_key.get_secret_value().encode() if config.session_key else None
        if config.session_key_file is not None:
            key = config.session_key_file.read_bytes().strip()
        if key is None:
            logging.getLogger(__name__).warning(
                "RAPPORT_WORKBENCH_SESSION_KEY is not set: sessions end when this process does, "
                "and another workbench process cannot read them (development only)"
            )
        self.cookies = SessionCookie(key or SessionCookie.new_key(), config.session_minutes * 60)
        self.authenticator = Authenticator(AuthSettings())
        self.templates = Jinja2Templates(
            env=Environment(
                loader=FileSystemLoader(HERE / "templates"),
                autoescape=True,
                undefined=StrictUndefined,
            )
        )

    def authenticate(self, scheme: Scheme | None, credential: str | None) -> Principal:
        """The principal a credential stands for, as the APIs see it; 401 otherwise."""
        if not self.authenticator.configured:
            raise HTTPException(401, "no authentication is configured (docs/security.md)")
        if scheme == "bearer":
            return self.authenticator.from_token(credential or "")
        return self.authenticator.from_api_key(credential or "")

    def view_of(self, request: Request) -> View:
        session = self.cookies.load(request.cookies.get(COOKIE))
        if session is not None and session.purpose != "session":
            session = None
        if session is not None and session.signed_in:
            # The credential checked again at every request, and the roles taken from it: a
            # key withdrawn or a role taken away counts from the next page, not the next
            # sign-in (the Operations page acts with the workbench's own access to Kafka).
            try:
                principal = self.authenticate(session.scheme, session.credential)
            except HTTPException:
                session = None
            else:
                roles = tuple(sorted(principal.roles))
                session = replace(session, roles=roles, rm_id=principal.rm_id)
        locale = negotiate(
            request.headers.get("accept-language"),
            request.cookies.get(LANGUAGE_COOKIE),
            self.config.default_locale,
        )
        fmt = Formatter(
            locale,
            zone(unquote(request.cookies.get(ZONE_COOKIE, "")), self.config.default_time_zone),
            self.config.currency,
        )
        return View(request, session or Session(), fmt, fresh=session is None, form={})

    def with_cookie(self, view: View, response: Response) -> Response:
        if view.fresh or view.session.signed_in:
            response.set_cookie(
                COOKIE,
                self.cookies.dump(view.session),
                max_age=self.config.session_minutes * 60,
                httponly=True,
                samesite="strict",
                secure=self.config.secure_cookie,
                path="/",
            )
        return response

    def redirect(self, view: View, target: str) -> Response:
        """Post/redirect/get, the session's cookie kept."""
        return self.with_cookie(view, RedirectResponse(target, status_code=303))

    def render(self, view: View, template: str, status: int = 200, **context: Any) -> Response:
        url = view.request.url
        response = self.templates.TemplateResponse(
            view.request,
            template,
            {
                "t": view.fmt.t,
                "fmt": view.fmt,
                "session": view.session,
                "locale": view.fmt.locale,
                "locales": LOCALES,
                "path": url.path + (f"?{url.query}" if url.query else ""),
                **context,
            },
            status_code=status,
        )
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return self.with_cookie(view, response)

    def failure(self, view: View, status: int, message: str) -> Response:
        return self.render(view, "error.html", status=status, message=message)

    def service_failure(self, view: View, exc: ServiceError) -> Response:
        if exc.status == 401:  # the credential expired or was revoked: sign in again
            return self.to_sign_in(view)
        if exc.status in (403, 404):
            return self.failure(
                view, exc.status, view.fmt.t(f"error.{exc.status}", detail=exc.detail)
            )
        status = 502 if exc.status >= 500 else exc.status
        return self.failure(
            view, status, view.fmt.t("error.service", service=exc.service, detail=exc.detail)
        )

    def to_sign_in(self, view: View) -> Response:
        # Back to the page after signing in; a form's target answers POST only: home instead.
        path = view.request.url.path if view.request.method == "GET" else "/"
        view.session, view.fresh = Session(), True
        return self.redirect(view, f"/signin?next={quote(path, safe='/')}")

    async def form_of(self, view: View) -> dict[str, str] | None:
        """The posted form, or None when its CSRF token is not this session's."""
        body = (await view.request.body()).decode("utf-8", errors="replace")
        fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        given = fields.get("csrf", "")
        if view.fresh or not hmac.compare_digest(given.encode(), view.session.csrf.encode()):
            return None
        return fields

    def guard(self, *roles: str, form: bool = False) -> Callable[[Handler], Route]:
        """A page (or, with `form`, a form's target) for the signed-in holders of `roles`
        (admin holds every role). A form without the session's CSRF token is refused before
        anything else is looked at; its fields are the view's `form`."""

        def wrap(handler: Handler) -> Route:
            async def run(request: Request) -> Response:
                view = self.view_of(request)
                if not view.session.signed_in:
                    return self.to_sign_in(view)
                if form:
                    fields = await self.form_of(view)
                    if fields is None:
                        return self.failure(view, 403, view.fmt.t("error.csrf"))
                    view.form = fields
                if roles and not view.session.has(*roles):
                    return self.failure(
                        view, 403, view.fmt.t("error.403", detail=" / ".join(roles))
                    )
                try:
                    return await handler(view)
                except ServiceError as exc:
                    return self.service_failure(view, exc)

            return run

        return wrap

    # -- signing in and out ---------------------------------------------------------------------

    def router(self) -> APIRouter:
        """Home, sign-in (form and link), sign-out, the language switch and the static files."""
        router = APIRouter(include_in_schema=False)
        config = self.config

        @router.get("/")
        async def home(request: Request) -> Response:
            view = self.view_of(request)
            if not view.session.signed_in:
                return self.to_sign_in(view)
            has = view.session.has
            return self.redirect(
                view, "/tasks" if has("rm") else "/team" if has("ops") else "/signin"
            )

        @router.get("/signin")
        async def sign_in_form(request: Request) -> Response:
            view = self.view_of(request)
            return self.render(
                view, "signin.html", next=safe_next(request.query_params.get("next"))
            )

        @router.post("/signin")
        async def sign_in(request: Request) -> Response:
            view = self.view_of(request)
            fields = await self.form_of(view)
            if fields is None:
                return self.failure(view, 403, view.fmt.t("error.csrf"))
            credential = fields.get("credential", "").strip()
            target = safe_next(fields.get("next"))
            # A JWT is three base64url parts; anything else is taken for an API key.
            scheme: Scheme = "bearer" if credential.count(".") == 2 else "key"
            try:
                principal = self.authenticate(scheme, credential)
            except HTTPException as exc:
                audit.info("sign-in refused: %s", exc.detail)
                return self.render(
                    view,
                    "signin.html",
                    status=401,
                    next=target,
                    refused=view.fmt.t("signin.refused", reason=exc.detail),
                )
            until = min(
                time.time() + config.session_minutes * 60, principal.expires_at or float("inf")
            )
            view.session = view.session.signed_in_as(principal, scheme, credential, until)
            audit.info("%s signed in", principal.subject)
            return self.redirect(view, target)

        @router.get("/signin/link")
        async def sign_in_link(request: Request) -> Response:
            view = self.view_of(request)
            linked = self.cookies.load(request.query_params.get("token"))
            if (
                not config.sign_in_links
                or linked is None
                or linked.purpose != "link"
                or not linked.signed_in
            ):
                return self.failure(view, 403, view.fmt.t("signin.link_refused"))
            view.session = replace(
                linked,
                purpose="session",
                csrf=Session().csrf,
                expires_at=time.time() + config.session_minutes * 60,
            )
            audit.info("%s signed in by a sign-in link", linked.subject)
            return self.redirect(view, "/")

        @router.post("/signout")
        async def sign_out(request: Request) -> Response:
            view = self.view_of(request)
            if await self.form_of(view) is None:
                return self.failure(view, 403, view.fmt.t("error.csrf"))
            audit.info("%s signed out", view.session.subject)
            view.session, view.fresh = Session(), True
            return self.redirect(view, "/signin")

        @router.get("/language/{locale}")
        async def language(locale: str, request: Request) -> Response:
            target = safe_next(request.query_params.get("next"))
            response = RedirectResponse(target, status_code=303)
            if locale in LOCALES:
                response.set_cookie(
                    LANGUAGE_COOKIE, locale, max_age=365 * 86400, samesite="strict", path="/"
                )
            return response

        @router.get("/static/{name}")
        async def static(name: str) -> Response:
            if name not in STATIC:
                return Response(status_code=404)
            return FileResponse(STATIC[name], headers={"Cache-Control": "max-age=3600"})

        return router
