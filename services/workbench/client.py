"""The one way the workbench reads and changes anything: the four services' HTTP APIs, asked
with the signed-in person's credential. A refusal or an error of a service comes back as a
`ServiceError` carrying the service's own status and reason."""

from __future__ import annotations

from typing import Any

import httpx

from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from services.workbench.config import WorkbenchSettings
from services.workbench.session import Session


class ServiceError(Exception):
    def __init__(self, service: str, status: int, detail: str) -> None:
        super().__init__(f"{service}: {status} {detail}")
        self.service = service
        self.status = status
        self.detail = detail


class Services:
    """The services' APIs, at RAPPORT_WORKBENCH_SERVICE_URLS or their default ports."""

    def __init__(self, runtime: RuntimeSettings, settings: WorkbenchSettings) -> None:
        self.urls = {
            service: settings.service_urls.get(service)
            or f"http://{runtime.api_host}:{runtime.api_port(service)}"
            for service in SERVICE_NAMES
        }
        self.http = httpx.AsyncClient(timeout=settings.service_timeout_seconds)

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        session: Session,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        try:
            answer = await self.http.request(
                method,
                self.urls[service] + path,
                params=params,
                json=body,
                headers=session.credential_headers(),
            )
        except httpx.HTTPError as exc:
            raise ServiceError(service, 503, str(exc) or type(exc).__name__) from exc
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise ServiceError(service, answer.status_code, str(detail))
        return answer.json()

    async def get(self, service: str, path: str, session: Session, **params: Any) -> Any:
        return await self.call(service, "GET", path, session, params=params or None)

    async def maybe(self, service: str, path: str, session: Session, **params: Any) -> Any:
        """The answer, or None when the service knows nothing of it (404)."""
        try:
            return await self.get(service, path, session, **params)
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise
