"""Gateway settings, read from `VALUECHAIN_GATEWAY_*` environment variables.

The suite-wide ones come from shared.settings.SuiteSettings under their own names:
`VALUECHAIN_VAR_DIR` (where the admin API key file lives), `VALUECHAIN_NATS_URL`
(checked by `/readyz`), `VALUECHAIN_ADMIN_API_KEY`. Ports and addresses default to
the suite's, written once in shared/settings.py.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import GATEWAY_PORT, SERVICE_PORTS, SERVICES, GatewayStoreSettings, local_url

__all__ = ["SERVICES", "GatewaySettings"]

DEFAULT_CORS_ORIGINS = ("http://localhost:3000", "http://127.0.0.1:3000")


class GatewaySettings(GatewayStoreSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = GATEWAY_PORT
    # uvicorn worker processes when started with `python -m gateway`.
    workers: int = 1

    identify_url: str = local_url(SERVICE_PORTS["identify"])
    engage_url: str = local_url(SERVICE_PORTS["engage"])
    network_url: str = local_url(SERVICE_PORTS["network"])
    value_url: str = local_url(SERVICE_PORTS["value"])
    lifecycle_url: str = local_url(SERVICE_PORTS["lifecycle"])

    # Upstream timeouts, in seconds. A proxied request gets `connect_timeout_s`
    # to open a connection and `request_timeout_s` in all for the full answer.
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 30.0
    # Each part of the 360 view, each service's /readyz, each service's /openapi.json.
    composition_timeout_s: float = 3.0
    ready_timeout_s: float = 2.0
    openapi_timeout_s: float = 5.0
    # How long a fetched service OpenAPI document is kept, and how soon a failed
    # fetch is retried.
    openapi_cache_s: float = 300.0
    openapi_retry_s: float = 5.0

    # Connection pool, per service. Idle keep-alive connections are dropped
    # before uvicorn's default keep-alive timeout (5 s) closes them upstream.
    pool_max_connections: int = 256
    pool_max_idle: int = 64
    keepalive_expiry_s: float = 4.0

    max_request_body_bytes: int = 10 * 1024 * 1024
    max_response_body_bytes: int = 64 * 1024 * 1024

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))

    # The audit log (gateway/audit/writer.py): entries are queued after each answer and
    # appended to the chain in batches of up to audit_batch, audit_flush_s after the first
    # of a batch was queued; a crash loses what is queued. Over audit_max_pending queued
    # (the database away for long), entries are dropped and logged. Every audit_head_every
    # entries the chain's head is logged, to be kept elsewhere (docs/security.md).
    audit_flush_s: float = 0.05
    audit_batch: int = 500
    audit_max_pending: int = 100_000
    audit_head_every: int = 1000

    log_level: str = "INFO"
    # One JSON line per request on stderr, written in batches every
    # access_log_flush_s seconds (0: each line at once).
    access_log: bool = True
    access_log_flush_s: float = 0.2
    # Trust X-Forwarded-For/-Proto from these peers (uvicorn's proxy headers);
    # empty: the gateway is the edge and trusts nobody.
    forwarded_allow_ips: str = ""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("identify_url", "engage_url", "network_url", "value_url", "lifecycle_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def service_url(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url

    def service_urls(self) -> dict[str, str]:
        return {service: self.service_url(service) for service in SERVICES}
