"""The workbench's pages: sign-in, an RM's tasks, a customer, the team, operations. Each page
asks the services' APIs as the signed-in person (client.py) and renders a Jinja2 template;
the forms post back here with the session's CSRF token and redirect (post/redirect/get)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from schemas.account_events import ID_PATTERN
from services.runtime.auth import Authenticator, AuthSettings, Principal
from services.runtime.settings import RuntimeSettings
from services.workbench import charts, operations, timeline
from services.workbench.client import ServiceError, Services
from services.workbench.config import WorkbenchSettings
from services.workbench.i18n import LOCALES, Formatter, negotiate, zone
from services.workbench.session import COOKIE, Scheme, Session, SessionCookie

HERE = Path(__file__).parent
STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}
LANGUAGE_COOKIE = "rapport_lang"
ZONE_COOKIE = "rapport_tz"
OUTCOMES = ("contacted", "retained", "lost", "not_reachable")
audit = logging.getLogger("rapport.workbench.audit")


@dataclass
class View:
    """One request as a page sees it: who, in which language and zone."""

    request: Request
    session: Session
    fmt: Formatter
    fresh: bool  # the session is new: its cookie must be set


def _safe_next(target: str | None) -> str:
    # Only a path of this site: "//evil.example" or "https://..." would leave it.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    config = WorkbenchSettings()
    key = config.session_key.get_secret_value().encode() if config.session_key else None
    if config.session_key_file is not None:
        key = config.session_key_file.read_bytes().strip()
    if key is None:
        logging.getLogger(__name__).warning(
            "RAPPORT_WORKBENCH_SESSION_KEY is not set: sessions end when this process does, "
            "and another workbench process cannot read them (development only)"
        )
    cookies = SessionCookie(key or SessionCookie.new_key(), config.session_minutes * 60)
    authenticator = Authenticator(AuthSettings())
    services = Services(settings, config)
    templates = Jinja2Templates(
        env=Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
        )
    )
    router = APIRouter(include_in_schema=False)

    def authenticate(scheme: Scheme | None, credential: str | None) -> Principal:
        """The principal a credential stands for, as the APIs see it; 401 otherwise."""
        if not authenticator.configured:
            raise HTTPException(401, "no authentication is configured (docs/security.md)")
        if scheme == "bearer":
            return authenticator.from_token(credential or "")
        return authenticator.from_api_key(credential or "")

    def view_of(request: Request) -> View:
        session = cookies.load(request.cookies.get(COOKIE))
        if session is not None and session.purpose != "session":
            session = None
        if session is not None and session.signed_in:
            # The credential checked again at every request, and the roles taken from it: a
            # key withdrawn or a role taken away counts from the next page, not the next
            # sign-in (the Operations page acts with the workbench's own access to Kafka).
            try:
                principal = authenticate(session.scheme, session.credential)
            except HTTPException:
                session = None
            else:
                roles = tuple(sorted(principal.roles))
                session = replace(session, roles=roles, rm_id=principal.rm_id)
        locale = negotiate(
            request.headers.get("accept-language"),
            request.cookies.get(LANGUAGE_COOKIE),
            config.default_locale,
        )
        fmt = Formatter(
            locale,
            zone(unquote(request.cookies.get(ZONE_COOKIE, "")), config.default_time_zone),
            config.currency,
        )
        return View(request, session or Session(), fmt, fresh=session is None)

    def with_cookie(view: View, response: Response) -> Response:
        if view.fresh or view.session.signed_in:
            response.set_cookie(
                COOKIE,
                cookies.dump(view.session),
                max_age=config.session_minutes * 60,
                httponly=True,
                samesite="strict",
                secure=config.secure_cookie,
                path="/",
            )
        return response

    def render(view: View, template: str, status: int = 200, **context: Any) -> Response:
        response = templates.TemplateResponse(
            view.request,
            template,
            {
                "t": view.fmt.t,
                "fmt": view.fmt,
                "session": view.session,
                "locale": view.fmt.locale,
                "locales": LOCALES,
                "path": view.request.url.path
                + (f"?{view.request.url.query}" if view.request.url.query else ""),
                **context,
            },
            status_code=status,
        )
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return with_cookie(view, response)

    def failure(view: View, status: int, message: str) -> Response:
        return render(view, "error.html", status=status, message=message)

    def service_failure(view: View, exc: ServiceError) -> Response:
        if exc.status == 401:  # the credential expired or was revoked: sign in again
            return to_sign_in(view)
        if exc.status == 403:
            return failure(view, 403, view.fmt.t("error.403", detail=exc.detail))
        if exc.status == 404:
            return failure(view, 404, view.fmt.t("error.404", detail=exc.detail))
        status = 502 if exc.status >= 500 else exc.status
        return failure(
            view, status, view.fmt.t("error.service", service=exc.service, detail=exc.detail)
        )

    def to_sign_in(view: View) -> Response:
        # Back to the page after signing in; a form's target answers POST only: home instead.
        path = view.request.url.path if view.request.method == "GET" else "/"
        target = quote(path, safe="/")
        response = RedirectResponse(f"/signin?next={target}", status_code=303)
        view.session = Session()
        view.fresh = True
        return with_cookie(view, response)

    async def form_of(view: View) -> dict[str, str] | None:
        """The posted form, or None when its CSRF token is not this session's."""
        body = (await view.request.body()).decode("utf-8", errors="replace")
        fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        given = fields.get("csrf", "")
        if view.fresh or not hmac.compare_digest(given.encode(), view.session.csrf.encode()):
            return None
        return fields

    Page = Callable[[View], Awaitable[Response]]

    def page(*roles: str) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
        """A page for the signed-in holders of `roles` (admin holds every role)."""

        def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                view = view_of(request)
                if not view.session.signed_in:
                    return to_sign_in(view)
                if roles and not view.session.has(*roles):
                    needed = " / ".join(roles)
                    return failure(view, 403, view.fmt.t("error.403", detail=needed))
                try:
                    return await handler(view)
                except ServiceError as exc:
                    return service_failure(view, exc)

            return run

        return wrap

    Action = Callable[[View, dict[str, str]], Awaitable[Response]]

    def action(*roles: str) -> Callable[[Action], Callable[[Request], Awaitable[Response]]]:
        """A form's target, for the signed-in holders of `roles`, refused without the
        session's CSRF token before anything is done."""

        def wrap(handler: Action) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                view = view_of(request)
                if not view.session.signed_in:
                    return to_sign_in(view)
                fields = await form_of(view)
                if fields is None:
                    return failure(view, 403, view.fmt.t("error.csrf"))
                if roles and not view.session.has(*roles):
                    return failure(view, 403, view.fmt.t("error.403", detail=" / ".join(roles)))
                try:
                    return await handler(view, fields)
                except ServiceError as exc:
                    return service_failure(view, exc)

            return run

        return wrap

    # -- sign-in --------------------------------------------------------------------------

    @router.get("/")
    async def home(request: Request) -> Response:
        view = view_of(request)
        if not view.session.signed_in:
            return to_sign_in(view)
        target = (
            "/tasks"
            if view.session.has("rm")
            else "/team"
            if view.session.has("ops")
            else "/signin"
        )
        return with_cookie(view, RedirectResponse(target, status_code=303))

    @router.get("/signin")
    async def sign_in_form(request: Request) -> Response:
        view = view_of(request)
        return render(view, "signin.html", next=_safe_next(request.query_params.get("next")))

    @router.post("/signin")
    async def sign_in(request: Request) -> Response:
        view = view_of(request)
        fields = await form_of(view)
        if fields is None:
            return failure(view, 403, view.fmt.t("error.csrf"))
        credential = fields.get("credential", "").strip()
        target = _safe_next(fields.get("next"))
        # A JWT is three base64url parts; anything else is taken for an API key.
        scheme: Scheme = "bearer" if credential.count(".") == 2 else "key"
        try:
            principal = authenticate(scheme, credential)
            until = min(
                time.time() + config.session_minutes * 60, principal.expires_at or float("inf")
            )
        except HTTPException as exc:
            audit.info("sign-in refused: %s", exc.detail)
            return render(
                view,
                "signin.html",
                status=401,
                next=target,
                refused=view.fmt.t("signin.refused", reason=exc.detail),
            )
        view.session = view.session.signed_in_as(principal, scheme, credential, until)
        audit.info("%s signed in", principal.subject)
        return with_cookie(view, RedirectResponse(target, status_code=303))

    @router.get("/signin/link")
    async def sign_in_link(request: Request) -> Response:
        view = view_of(request)
        linked = cookies.load(request.query_params.get("token"))
        if (
            not config.sign_in_links
            or linked is None
            or linked.purpose != "link"
            or not linked.signed_in
        ):
            return failure(view, 403, view.fmt.t("signin.link_refused"))
        view.session = replace(
            linked,
            purpose="session",
            csrf=Session().csrf,
            expires_at=time.time() + config.session_minutes * 60,
        )
        audit.info("%s signed in by a sign-in link", linked.subject)
        return with_cookie(view, RedirectResponse("/", status_code=303))

    @router.post("/signout")
    async def sign_out(request: Request) -> Response:
        view = view_of(request)
        if await form_of(view) is None:
            return failure(view, 403, view.fmt.t("error.csrf"))
        audit.info("%s signed out", view.session.subject)
        view.session, view.fresh = Session(), True
        return with_cookie(view, RedirectResponse("/signin", status_code=303))

    @router.get("/language/{locale}")
    async def language(locale: str, request: Request) -> Response:
        response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
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

    # -- an RM's tasks ----------------------------------------------------------------------

    async def stages_of(view: View, customers: set[str]) -> dict[str, dict[str, Any] | None]:
        """Each customer's lifecycle profile, or None: a row without its stage is better than
        no list (a customer moved to another RM since the task came, the API down)."""

        async def one(customer: str) -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = await services.get(
                    "lifecycle", f"/customers/{customer}/lifecycle", view.session
                )
            except ServiceError:  # unknown (404), refused, or the API down alike
                return None
            return found

        found = await asyncio.gather(*(one(c) for c in customers))
        return dict(zip(customers, found, strict=True))

    @router.get("/tasks")
    @page("rm")
    async def tasks(view: View) -> Response:
        rm = view.request.query_params.get("rm") if view.session.has("admin") else None
        rm = rm or view.session.rm_id
        if rm is None:
            return render(view, "tasks.html", rm=None, tasks=[], saved=None)
        found = await services.get("notify", f"/rm/{quote(rm, safe='')}/tasks", view.session)
        open_tasks = [t for t in found if t["status"] == "open"]
        profiles = await stages_of(view, {t["customer_id"] for t in open_tasks})
        return render(
            view,
            "tasks.html",
            rm=rm,
            tasks=open_tasks,
            queued=sum(t["status"] == "queued" for t in found),
            profiles=profiles,
            outcomes=OUTCOMES,
            saved=saved_outcome(view),
        )

    @router.post("/tasks/{task_id}/outcome")
    @action("rm")
    async def outcome(view: View, fields: dict[str, str]) -> Response:
        task_id = view.request.path_params["task_id"]
        chosen = fields.get("outcome", "")
        if chosen not in OUTCOMES:
            return failure(view, 422, f"outcome: one of {', '.join(OUTCOMES)}")
        body = {"outcome": chosen, "note": fields.get("note", "").strip()[:500] or None}
        path = f"/tasks/{quote(task_id, safe='')}/outcome"
        await services.call("notify", "POST", path, view.session, body=body)
        audit.info("%s recorded %s on task %s", view.session.subject, chosen, task_id)
        back = _safe_next(fields.get("next") or "/tasks")
        joiner = "&" if "?" in back else "?"
        return with_cookie(view, RedirectResponse(f"{back}{joiner}saved={chosen}", 303))

    # -- a customer -------------------------------------------------------------------------

    @router.get("/customers/{customer_id}")
    @page("rm", "ops")
    async def customer(view: View) -> Response:
        customer_id = view.request.path_params["customer_id"]
        if not _matches_id(customer_id):
            return failure(view, 404, view.fmt.t("error.404", detail=customer_id))
        # The lifecycle API says first whether this person may see the customer (403).
        profile = await optional(
            services.maybe("lifecycle", f"/customers/{customer_id}/lifecycle", view.session)
        )
        history, referrals, rewards, ledger, notifications = await asyncio.gather(
            optional(
                services.maybe(
                    "lifecycle", f"/customers/{customer_id}/lifecycle/history", view.session
                )
            ),
            optional(
                services.maybe("referral", f"/customers/{customer_id}/referrals", view.session)
            ),
            optional(services.maybe("rewards", f"/customers/{customer_id}/rewards", view.session)),
            optional(
                services.maybe(
                    "rewards", f"/customers/{customer_id}/ledger", view.session, limit=200
                )
            ),
            optional(
                services.maybe(
                    "notify", f"/customers/{customer_id}/notifications", view.session, limit=200
                )
            ),
        )
        rm = view.session.rm_id
        own_tasks: list[dict[str, Any]] = []
        if rm is not None:
            every_task = await optional(
                services.get(
                    "notify",
                    f"/rm/{quote(rm, safe='')}/tasks",
                    view.session,
                    include_closed="true",
                    all_leads="true",
                )
            )
            own_tasks = [t for t in every_task or [] if t["customer_id"] == customer_id]
        return render(
            view,
            "customer.html",
            customer_id=customer_id,
            profile=profile,
            referrals=referrals,
            rewards=rewards,
            notifications=notifications or [],
            tasks=own_tasks,
            outcomes=OUTCOMES,
            saved=saved_outcome(view),
            events=timeline.of(
                view.fmt,
                profile,
                history or [],
                (ledger or {}).get("entries", []),
                notifications or [],
                (referrals or {}).get("referrals", []),
                own_tasks,
            ),
        )

    # -- the team -----------------------------------------------------------------------------

    @router.get("/team")
    @page("ops")
    async def team(view: View) -> Response:
        summary, uplift, stages, monthly = await asyncio.gather(
            services.get("notify", "/tasks/summary", view.session),
            services.get("notify", "/interventions/uplift", view.session),
            services.get("lifecycle", "/lifecycle/summary", view.session),
            optional(services.get("lifecycle", "/lifecycle/summary/monthly", view.session)),
        )
        return render(
            view,
            "team.html",
            summary=summary,
            uplift=uplift,
            stages=stages,
            charts=[(tier, charts.stage_columns(monthly or [], tier)) for tier in charts.TIERS],
            chart=charts,
        )

    # -- operations -----------------------------------------------------------------------------

    @router.get("/ops")
    @page("ops")
    async def ops_page(view: View) -> Response:
        workers, dead_letters = await asyncio.gather(
            operations.workers(settings, config.metrics_urls),
            operations.dead_letter_groups(settings),
        )
        return render(
            view,
            "ops.html",
            workers=workers,
            dead_letters=dead_letters,
            replayed=int(n)
            if (n := view.request.query_params.get("replayed", "")).isdigit()
            else None,
        )

    @router.post("/ops/dead-letters/replay")
    @action("admin")
    async def replay(view: View, fields: dict[str, str]) -> Response:
        group = (fields.get("topic", ""), fields.get("service", ""), fields.get("reason", ""))
        try:
            sent = await operations.replay(settings, *group)
        except (KafkaError, TimeoutError, OSError):
            return failure(view, 503, view.fmt.t("ops.broker_down"))
        audit.info(
            "%s replayed %d dead letters of %s (service %s, reason %s)",
            view.session.subject,
            sent,
            *group,
        )
        return with_cookie(view, RedirectResponse(f"/ops?replayed={sent}", status_code=303))

    return [router]


def saved_outcome(view: View) -> str | None:
    """The outcome just recorded, named in the address the form redirected to; only a known
    one is shown (the banner would otherwise repeat whatever the address says)."""
    saved = view.request.query_params.get("saved")
    return saved if saved in OUTCOMES else None


async def optional(call: Awaitable[Any]) -> Any:
    """A section of a page that one service cannot give is left empty; the page still shows
    what the others know. A refusal (403) is not swallowed: it is the page's answer."""
    try:
        return await call
    except ServiceError as exc:
        if exc.status in (401, 403):
            raise
        return None


def _matches_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None
