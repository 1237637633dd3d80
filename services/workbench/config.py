"""Workbench settings (RAPPORT_WORKBENCH_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.workbench.i18n import LOCALES


class WorkbenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_WORKBENCH_", extra="ignore")

    # The key the session cookie is encrypted and signed with (Fernet: 32 url-safe base64
    # bytes), inline or as a file; every workbench process of a deployment needs the same one.
    # Unset: a key made at start, so sessions end when the process does (development only).
    session_key: SecretStr | None = None
    session_key_file: Path | None = None
    session_minutes: int = Field(480, ge=5, le=24 * 60)
    # Accept the sign-in links `rapport demo` prints (development only: whoever holds a link
    # is signed in; `rapport up` turns this on when it made the development keys).
    sign_in_links: bool = False
    # The session cookie is sent over HTTPS only. `rapport up` turns this off for its plain
    # http://127.0.0.1; behind a proxy that ends TLS, keep it on.
    secure_cookie: bool = True
    # The services' APIs, when not at RAPPORT_API_HOST on their default ports:
    # {"lifecycle": "http://lifecycle:8101", ...}.
    service_urls: dict[str, str] = {}
    # The workers' /metrics, for the Operations page, when not on this machine's metrics ports:
    # {"lifecycle": "http://lifecycle-worker:9101/metrics", ...}.
    metrics_urls: dict[str, str] = {}
    # The language of a browser that asks for none the workbench has.
    default_locale: str = Field("zh-CN", pattern="|".join(LOCALES))
    # The zone dates are shown in until the browser has said its own.
    default_time_zone: str = "Asia/Shanghai"
    # Shown beside amounts (the read models keep amounts without a currency).
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    # How long the workbench waits for a service's API.
    service_timeout_seconds: float = Field(10.0, gt=0, le=120)
