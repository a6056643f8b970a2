"""Gateway settings, read from `VALUECHAIN_GATEWAY_*` environment variables.

The suite-wide ones come from shared.settings.SuiteSettings under their own names:
`VALUECHAIN_VAR_DIR` (where the admin API key file lives), `VALUECHAIN_NATS_URL`
(checked by `/readyz`), `VALUECHAIN_ADMIN_API_KEY`. Ports and addresses default to
the suite's, written once in shared/settings.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import GATEWAY_PORT, SERVICE_PORTS, SERVICES, GatewayStoreSettings, local_url

__all__ = ["SERVICES", "GatewaySettings"]

DEFAULT_CORS_ORIGINS = ("http://localhost:3000", "http://127.0.0.1:3000")
# Requests per key per minute (VALUECHAIN_GATEWAY_RATE_LIMIT_WINDOW_S), by role.
DEFAULT_RATE_LIMITS = {
    "admin": 60000,
    "manager": 3000,
    "agent": 1200,
    "marketer": 1200,
    "analyst": 1200,
    "partner": 600,
    "readonly": 600,
}


class GatewaySettings(GatewayStoreSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = GATEWAY_PORT
    # uvicorn worker processes when started with `python -m gateway`.
    workers: int = 1

    # Each service's base URL; several replicas: their URLs separated by commas (or a JSON
    # list), and the gateway spreads requests over them (gateway/upstream.py ReplicaSet).
    identify_url: str = local_url(SERVICE_PORTS["identify"])
    engage_url: str = local_url(SERVICE_PORTS["engage"])
    network_url: str = local_url(SERVICE_PORTS["network"])
    value_url: str = local_url(SERVICE_PORTS["value"])
    lifecycle_url: str = local_url(SERVICE_PORTS["lifecycle"])

    # -- replicas (issue 17; gateway/health.py RotationKeeper) --
    # How often each replica of a service with several is checked (its /readyz), to take it
    # out of the rotation or put it back; a refused connection takes it out at once.
    replica_check_interval_s: float = Field(2.0, gt=0.0)

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

    max_response_body_bytes: int = 64 * 1024 * 1024

    # What a client's request may take, checked below ASGI by gateway/server.py
    # (`python -m gateway`). A head (request line and headers) over either cap is a
    # 431; a head not in within request_header_timeout_s of its first byte (or of
    # the connection's opening), and a body that stalls for request_body_idle_timeout_s
    # or takes over request_body_timeout_s, are a 408. nginx reads heads into 1 KiB
    # plus 4 x 8 KiB buffers, gunicorn allows 100 header lines; our own heads
    # (a key or a JWT, ids, content type) stay well under 8 KiB.
    max_request_header_bytes: int = 32 * 1024
    max_request_headers: int = 100
    request_header_timeout_s: float = 10.0
    request_body_idle_timeout_s: float = 10.0
    request_body_timeout_s: float = 120.0
    # Connections one client address may keep waiting for a request (new, idle between
    # requests, or with an incomplete head); over it its oldest one is closed. Behind a
    # proxy every connection comes from the proxy: raise it above the proxy's keep-alive
    # pool, or 0 for no bound.
    max_idle_connections_per_client: int = 64

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))

    # -- limits at the edge (issue 12; docs/security.md#limits-at-the-edge) --
    # A request body over max_request_body_bytes is 413, except an upload (a
    # multipart/form-data or text/csv body to an upload route: POST /v1/imports),
    # which may reach max_upload_body_bytes and is streamed to the service.
    max_request_body_bytes: int = 1024 * 1024
    max_upload_body_bytes: int = 200 * 1024 * 1024
    # Requests per key per rate_limit_window_s, by role (a token bucket of that size,
    # refilled evenly over the window). JSON; roles not named keep their default.
    rate_limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    rate_limit_window_s: int = Field(60, ge=1)
    # Gateway processes sharing the budget: each takes 1/replicas of it (measured
    # against shared state in docs/benchmarks.md). 0: the worker count (`workers`).
    replicas: int = Field(0, ge=0)
    # The gateway's NATS password (user `gateway`; /readyz, the rate limits' KV bucket). No
    # default: without it the gateway reads <var_dir>/nats/gateway.password (`valuechain run` makes it).
    nats_password: SecretStr | None = None
    # The audit log (gateway/audit/writer.py): entries are queued after each answer and
    # appended to the chain in batches of up to audit_batch, audit_flush_s after the first
    # of a batch was queued; a crash loses what is queued. Over audit_max_pending queued
    # (the database away for long), entries are dropped and logged. Every audit_head_every
    # entries the chain's head is logged, to be kept elsewhere (docs/security.md).
    audit_flush_s: float = 0.05
    audit_batch: int = 500
    audit_max_pending: int = 100_000
    audit_head_every: int = 1000
    # Export jobs (gateway/exports.py, docs/privacy.md#export-art-1520): a finished export's
    # document (personal data) is kept in the gateway's database until it is downloaded, or
    # deleted export_retention_s after it finished; a sweep runs every export_sweep_s (and
    # at start, and on each new job).
    export_retention_s: float = Field(7 * 86400.0, gt=0.0)
    export_sweep_s: float = Field(3600.0, gt=0.0)

    log_level: str = "INFO"
    # One JSON line per request on stderr, written in batches every
    # access_log_flush_s seconds (0: each line at once).
    access_log: bool = True
    access_log_flush_s: float = 0.2
    # Trust X-Forwarded-For/-Proto from these peers (uvicorn's proxy headers);
    # empty: the gateway is the edge and trusts nobody.
    forwarded_allow_ips: str = ""

    # Access (gateway/access/, docs/security.md). A key's or JWT's answer is cached this
    # long per process: the bound on how soon another process sees a revocation.
    key_cache_ttl_s: float = Field(5.0, ge=0.0, le=300.0)
    # last_used_at of API keys is written in batches this often (and at shutdown).
    key_last_used_flush_s: float = Field(15.0, gt=0.0)
    # JWTs from the company's IdP: off unless the JWKS URL is set (then issuer and audience are needed).
    jwt_jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_role_claim: str = "role"
    jwt_person_claim: str = ""  # a claim holding the employee stakeholder id; empty: none
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwt_leeway_s: float = Field(30.0, ge=0.0, le=300.0)
    jwt_jwks_cache_s: float = Field(300.0, gt=0.0)
    # The console's "Sign in with SSO" (gateway/console/, docs/console.md): the IdP's OAuth 2.0
    # authorization and token endpoints and the console's public client id (code flow with
    # PKCE). Off unless all three are set; the tokens it gets are the JWTs verified above.
    console_oidc_authorize_url: str = ""
    console_oidc_token_url: str = ""
    console_oidc_client_id: str = ""
    console_oidc_scope: str = "openid"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limits", mode="after")
    @classmethod
    def _merge_rate_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for role, quota in value.items():
            if quota < 1:
                raise ValueError(f"the rate limit of {role!r} must be at least 1 request per window")
        return {**DEFAULT_RATE_LIMITS, **value}

    def gateway_replicas(self) -> int:
        """How many gateway processes split each key's budget."""
        return self.replicas or max(self.workers, 1)

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and (not value or any(alg not in ("RS256", "ES256") for alg in value)):
            raise ValueError("JWT algorithms are RS256 and/or ES256 (never none or HS*)")
        return value

    @model_validator(mode="after")
    def _jwt_complete(self) -> Self:
        if self.jwt_jwks_url and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("VALUECHAIN_GATEWAY_JWT_JWKS_URL needs _JWT_ISSUER and _JWT_AUDIENCE too")
        oidc = (self.console_oidc_authorize_url, self.console_oidc_token_url, self.console_oidc_client_id)
        if any(oidc) and not all(oidc):
            raise ValueError(
                "the console's SSO needs VALUECHAIN_GATEWAY_CONSOLE_OIDC_AUTHORIZE_URL, _TOKEN_URL and _CLIENT_ID"
            )
        if any(oidc) and not self.jwt_jwks_url:
            raise ValueError("the console's SSO needs the gateway to verify the IdP's JWTs (_JWT_JWKS_URL)")
        for url in oidc[:2]:
            if url and not url.startswith(("https://", "http://")):
                raise ValueError(f"the console's SSO endpoints are http(s) URLs, got {url!r}")
        return self

    @field_validator("identify_url", "engage_url", "network_url", "value_url", "lifecycle_url", mode="before")
    @classmethod
    def _check_urls(cls, value: object) -> object:
        """One URL, or several (comma-separated or a JSON list), kept as `a,b` without trailing slashes."""

        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"not a JSON list of URLs: {value!r}") from None
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"expected an http(s) URL or a list of them, got {value!r}")
        urls = [item.strip().rstrip("/") for item in value if item.strip()]
        if not urls:
            raise ValueError("expected at least one http(s) URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"expected an http(s) URL, got {url!r}")
        if len(set(urls)) != len(urls):
            raise ValueError(f"a replica's URL is listed twice: {value!r}")
        return ",".join(urls)

    @field_validator("nats_password", mode="before")
    @classmethod
    def _blank_password_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def secrets(self) -> dict[str, str | None]:
        password = self.nats_password.get_secret_value() if self.nats_password is not None else None
        return {**super().secrets(), "VALUECHAIN_GATEWAY_NATS_PASSWORD": password}

    def service_url(self, service: str) -> str:
        """The service's URL setting as given: one URL, or its replicas' separated by commas."""

        url: str = getattr(self, f"{service}_url")
        return url

    def service_replicas(self, service: str) -> list[str]:
        return self.service_url(service).split(",")

    def service_urls(self) -> dict[str, list[str]]:
        """Each service's replicas' base URLs (one for a service without replicas)."""

        return {service: self.service_replicas(service) for service in SERVICES}
