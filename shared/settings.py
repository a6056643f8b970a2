"""Every setting of the suite, as pydantic-settings classes, each default written once.

Environment variables are `VALUECHAIN_*`: the suite-wide ones (`VALUECHAIN_VAR_DIR`,
`VALUECHAIN_NATS_URL`, `VALUECHAIN_ENVIRONMENT`, `VALUECHAIN_ADMIN_API_KEY`) in
`SuiteSettings`, each stage service's own under `VALUECHAIN_<SERVICE>_*` (one class per
service below), the gateway's under `VALUECHAIN_GATEWAY_*` (gateway/settings.py, its
defaults taken from here) and the `valuechain` command's in valuechain/supervisor.py.
docs/operations.md lists every one; a test walks these classes to keep that table whole.

Settings are read once, where an app is made (`create_service_app`, the gateway's
`create_app`, the supervisor), and handed out from there: through the typed `Runtime`,
and, for code that has no runtime to ask (a pydantic validator bounding a date), through
`current_settings()`, which the app sets for each request and for its background tasks.
Nothing caches them for the process, so two apps in one process (the tests) each see
their own. The same code runs on SQLite and PostgreSQL: only the database URL changes.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.http.validation import Currency

SERVICE_PORTS = {"identify": 8101, "engage": 8102, "network": 8103, "value": 8104, "lifecycle": 8105}
SERVICES = tuple(SERVICE_PORTS)
GATEWAY_PORT = 8000
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_PUBLIC_BASE_URL = f"http://127.0.0.1:{GATEWAY_PORT}"

# Secrets that are examples, not secrets: fine on a laptop, refused outside development
# (`crm` is the database password docker-compose.yml falls back to).
PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "changeme", "change-me", "secret", "password", "crm", "postgres", "admin"}
)


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL setting, one or several separated by commas (a cluster):
    nats-py's `connect` takes a list and reads a single string as one server."""

    return [part.strip() for part in url.split(",") if part.strip()]


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _revealed(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _blank_secret_is_none(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


class SuiteSettings(BaseSettings):
    """What every process reads, under the same names whatever its own prefix."""

    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_", extra="ignore", populate_by_name=True)

    # `development` lets placeholder secrets through; anything else refuses them at start.
    environment: Literal["development", "production"] = Field("development", validation_alias="VALUECHAIN_ENVIRONMENT")
    var_dir: Path = Field(Path("var"), validation_alias="VALUECHAIN_VAR_DIR")
    nats_url: str = Field(DEFAULT_NATS_URL, validation_alias="VALUECHAIN_NATS_URL")
    # No default: without it the gateway makes a key once and keeps it in <var_dir>/admin-api-key.
    admin_api_key: SecretStr | None = Field(None, validation_alias="VALUECHAIN_ADMIN_API_KEY")
    # The secret the gateway sends services on every request (x-valuechain-internal). No
    # default: without it the first process to need it makes one in <var_dir>/internal-secret.
    internal_secret: SecretStr | None = Field(None, validation_alias="VALUECHAIN_INTERNAL_SECRET")
    # Where customers' signed links point (unsubscribe, feedback, ideas): the gateway as the
    # customer's browser reaches it. No trailing slash.
    public_base_url: str = Field(DEFAULT_PUBLIC_BASE_URL, validation_alias="VALUECHAIN_PUBLIC_BASE_URL")
    # The key that signs customers' links (shared/signed_links.py). No default: without it
    # the first process to need it makes one in <var_dir>/links-secret.
    links_secret: SecretStr | None = Field(None, validation_alias="VALUECHAIN_LINKS_SECRET")
    # --- the event feed (issue 16: services/network/feed) ---
    # How long the stream `CRM` keeps an event, in seconds: how far back the event feed
    # (GET /v1/events) and webhook replays reach. 0 keeps every event (bounded by disk
    # only): consumers added later build their read models from the whole stream, so a
    # limit also bounds what a new consumer can learn. Applied by `valuechain migrate`.
    stream_max_age_s: float = Field(0.0, ge=0, validation_alias="VALUECHAIN_STREAM_MAX_AGE_S")
    # --- end of the event feed's ---
    # --- a JetStream cluster (issue 17 §2) ---
    # Copies of the stream `CRM` (its consumers and the `ratelimits` bucket follow) the
    # JetStream cluster keeps: 1 on one server, 3 on a three-node cluster (`valuechain run
    # --nats-cluster 3` sets it). At most the cluster's size. Applied by `valuechain migrate`.
    stream_replicas: int = Field(1, ge=1, le=5, validation_alias="VALUECHAIN_STREAM_REPLICAS")
    # --- end of the JetStream cluster's ---

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("VALUECHAIN_PUBLIC_BASE_URL must be an http(s) URL")
        return value

    @field_validator("var_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("admin_api_key", "internal_secret", "links_secret", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return _blank_secret_is_none(value)

    def secrets(self) -> dict[str, str | None]:
        """The secrets these settings hold, by variable name (a subclass adds its own)."""

        return {
            "VALUECHAIN_ADMIN_API_KEY": _revealed(self.admin_api_key),
            "VALUECHAIN_INTERNAL_SECRET": _revealed(self.internal_secret),
            "VALUECHAIN_LINKS_SECRET": _revealed(self.links_secret),
        }

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Self:
        if self.environment != "development":
            for name, value in self.secrets().items():
                if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"{name} holds the placeholder secret {value!r}: set a real one "
                        f"(placeholders are allowed only with VALUECHAIN_ENVIRONMENT=development)"
                    )
        return self


class ServiceSettings(SuiteSettings):
    """Settings common to every stage service; each service's class binds its prefix."""

    service: ClassVar[str] = ""

    # Empty: SQLite in <var_dir>/<service>.db. 0: the service's port in SERVICE_PORTS.
    database_url: str = ""
    # PostgreSQL: the connections a service keeps open, and how many more a burst may open
    # (each closed when it is returned). Opening one costs a server backend, asyncpg's type
    # introspection and every statement prepared again: with 20 kept and 10 more, identify
    # opened 339 connections in one latency bench (32 requests at once); with 30 kept and
    # none more, the same at most, it opened 31 (docs/benchmarks.md). Each replica may hold
    # up to the sum.
    database_pool_size: int = Field(30, ge=1, le=1000)
    database_max_overflow: int = Field(0, ge=0, le=1000)
    port: int = 0
    stream: str = "CRM"
    # The service's NATS password (its user is the service's name). No default: without it
    # the service reads <var_dir>/nats/<service>.password, which `valuechain run` makes.
    nats_password: SecretStr | None = None
    # Consumers: how many events one pull asks for, how long a pull lingers,
    # and how often a failing event is retried before it is dead-lettered.
    consumer_batch: int = 500
    consumer_expires_s: float = 5.0
    consumer_max_deliver: int = 5
    consumer_ack_wait_s: float = 30.0
    consumer_backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0, 15.0)
    # How long a consumer waits for more events after the first of a micro-batch, so that
    # events arriving close together share one transaction: CPU for latency (docs/benchmarks.md).
    consumer_linger_s: float = Field(0.02, ge=0, le=1)
    # The linger of a consumer group (ConsumerSpec.group) named here instead; as JSON in the
    # environment, e.g. {"stage-changes": 0.02}.
    consumer_group_linger_s: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    outbox_poll_s: float = 0.5
    outbox_batch: int = 500
    # How long the relay lets published rows gather before it marks them published, in one
    # write for all of them: a write per commit was a transaction per event at 200 writes/s.
    outbox_mark_delay_s: float = Field(0.1, ge=0, le=5)
    # --- replicas (issue 17, shared/db/leases.py): the relay, each consumer and each schedule
    # run in one replica at a time, holding a lease renewed every `lease_renew_s`; a replica
    # that dies (SIGKILL) is replaced after at most `lease_ttl_s` + `lease_renew_s`.
    lease_ttl_s: float = 5.0
    lease_renew_s: float = 1.0
    # --- end replicas
    log_level: str = "INFO"
    gil_switch_interval_s: float = 0.0005
    # The cyclic garbage collector: what is alive once the service has started is
    # frozen out of its walks, and the youngest generation is collected every this
    # many allocations (CPython's default, 700, made the consumers that emit an
    # event per event spend a fifth of their time collecting).
    gc_gen0_threshold: int = 10_000

    @model_validator(mode="after")
    def _local_defaults(self) -> Self:
        if self.lease_ttl_s < 2 * self.lease_renew_s:
            # A holder takes its lease for lost `lease_renew_s` before it expires: it must have
            # had a renewal in between.
            raise ValueError(
                f"lease_ttl_s ({self.lease_ttl_s}) must be at least twice lease_renew_s ({self.lease_renew_s})"
            )
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / (self.service + '.db')}"
        if not self.port:
            self.port = SERVICE_PORTS.get(self.service, 0)
        return self

    def secrets(self) -> dict[str, str | None]:
        password = make_url(self.database_url).password if self.database_url else None
        return {
            **super().secrets(),
            f"VALUECHAIN_{self.service.upper()}_DATABASE_URL (its password)": password,
            f"VALUECHAIN_{self.service.upper()}_NATS_PASSWORD": _revealed(self.nats_password),
        }

    @field_validator("nats_password", mode="before")
    @classmethod
    def _blank_password_is_none(cls, value: object) -> object:
        return _blank_secret_is_none(value)


class UnchainedConsumerSettings(ServiceSettings):
    """A service whose event handling nothing waits on in a chain (engage, value, network;
    lifecycle's stage changes, unlike theirs, are what other services and partners act on):
    its consumers gather larger micro-batches, for effects up to a quarter of a second later
    under load. At 200 purchases/s on PostgreSQL, 0.25 s rather than 0.1 cut the suite's CPU
    per purchase by about 0.5 ms; 0.5 s saved little more and let the stage changes' p99 grow
    with the bigger bursts (docs/benchmarks.md, "Stop 23")."""

    consumer_linger_s: float = Field(0.25, ge=0, le=1)


class IdentifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_IDENTIFY_")
    service: ClassVar[str] = "identify"

    # The region a phone number without a country code is read in (ISO 3166 alpha-2).
    default_region: str = "US"
    # The currency every sum of money is in: purchases in other currencies are converted at
    # the rates loaded with PUT /v1/fx-rates. Change it only before recording transactions
    # (stored reporting amounts are not re-converted).
    reporting_currency: Currency = Field("USD", validate_default=True)  # read as a value from outside is
    # Time value of money: an annual rate, converted to the model's time unit.
    discount_rate: float = Field(0.10, ge=0, le=1)
    # Predictive CLV looks this many days ahead.
    clv_horizon_days: int = Field(365, ge=1, le=3650)
    # Share of revenue that is profit when transactions carry no margin (1.0 = value revenue).
    default_margin: float = Field(1.0, ge=0, le=1)
    # Strategically significant customers.
    high_value_top: float = Field(0.10, gt=0, le=1)  # top share of predicted CLV
    benchmark_min_referrals: int = Field(2, ge=1)
    # Shipped ideas (value's crm.value.idea.shipped) that make an inspiration customer.
    inspiration_min_shipped_ideas: int = Field(1, ge=1)
    # … or at least this many helpful marks on their community posts (engage's helpfulness.changed).
    benchmark_min_helpful_marks: int = Field(10, ge=1)
    # … or referred customers who spent at least this much in all (the reporting currency).
    benchmark_min_referred_revenue: float = Field(1000.0, gt=0)
    cost_absorber_top: float = Field(0.20, gt=0, le=1)  # top share by number of purchases …
    thin_margin: float = Field(0.15, ge=0, le=1)  # … at a margin ratio at most this
    # CLV bands (low, medium, high, top): predicted CLV below each edge, in the portfolio's
    # money; fixed amounts rather than quantiles so a band means the same thing from one
    # model version to the next (docs/portfolio.md). JSON in the environment: [50, 250, 1000].
    clv_band_edges: tuple[float, float, float] = (50.0, 250.0, 1000.0)
    # Background refit: every this many seconds (0 = only on request).
    refit_interval_s: float = Field(86400.0, ge=0)
    # Import jobs run in a worker process forked for each (services/identify/imports/worker.py),
    # so their Python does not share the API's interpreter lock; false: in the API's process.
    import_worker: bool = True
    # The dates a client may give (a purchase's occurred_at, a refit's calibration_end):
    # not before the floor, not after now plus the skew allowed for clocks ahead of
    # ours. Scores are as of the latest purchase: one purchase dated 2099 made 2099 the
    # scoring day of every customer.
    date_floor: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    date_skew_s: float = Field(86400.0, ge=0, le=30 * 86400)
    # The key of the erasure suppression list's hashes (shared/privacy/suppression.py); empty:
    # a random key made on first run in <var_dir>/suppression-key.
    suppression_key: SecretStr | None = None

    def secrets(self) -> dict[str, str | None]:
        key = self.suppression_key.get_secret_value() if self.suppression_key else None
        return {**super().secrets(), "VALUECHAIN_IDENTIFY_SUPPRESSION_KEY": key}

    @field_validator("default_region")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("date_floor")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @field_validator("clv_band_edges")
    @classmethod
    def _increasing(cls, edges: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(low < high for low, high in pairwise(edges)):
            raise ValueError("clv_band_edges must increase: [low→medium, medium→high, high→top]")
        return edges


class EngageSettings(UnchainedConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_ENGAGE_")
    service: ClassVar[str] = "engage"

    # Marketing messages per channel: at most N in D days, as JSON {"email": [3, 7], ...};
    # a channel not named takes "default".
    frequency_caps: dict[str, tuple[int, int]] = {"default": (3, 7), "sms": (2, 7), "phone": (2, 7)}
    # The From of outbound mail; its domain ends every Message-ID engage makes.
    mail_from: str = "Value Chain CRM <crm@valuechain.localhost>"
    # Outbound mail (services/engage/outbound): the SMTP server, as
    # smtp://[user:password@]host[:port][?starttls=true] or smtps://... (implicit TLS); unset:
    # every message is written to <var_dir>/mail/<message id>.eml instead (the file back end).
    smtp_url: SecretStr | None = Field(None, validation_alias="VALUECHAIN_SMTP_URL")
    # A failed send (a 4xx reply, a lost connection) is tried again after these many seconds,
    # the last one repeating, until mail_max_attempts; a 5xx reply fails it at once.
    mail_max_attempts: int = Field(5, ge=1)
    mail_backoff_s: tuple[float, ...] = (30.0, 120.0, 600.0, 1800.0)
    # The sender claims up to mail_batch due messages at a time and sends them over
    # mail_connections SMTP connections, each kept open between batches; a claimed message is
    # another sender's again after mail_lease_s (its sender died mid-batch).
    mail_batch: int = Field(200, ge=1, le=5000)
    mail_connections: int = Field(4, ge=1, le=64)
    mail_lease_s: float = Field(300.0, gt=0)
    # How often an idle sender looks for due messages (a queued message wakes it at once).
    mail_poll_s: float = Field(1.0, gt=0)
    mail_timeout_s: float = Field(30.0, gt=0)
    # A customer invited to a survey is not invited again (by a rule or on demand) for this many days.
    survey_quiet_days: int = Field(default=30, ge=0)
    # A survey rule fires only for touchpoints at most this old: importing history sends no surveys.
    survey_touchpoint_max_age_days: int = Field(default=7, ge=0)

    @field_validator("frequency_caps")
    @classmethod
    def _caps(cls, caps: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for channel, (limit, days) in caps.items():
            if limit < 0 or days < 1:
                raise ValueError(f"frequency_caps[{channel}]: need messages >= 0 and days >= 1")
        return {"default": (3, 7), **caps}

    @field_validator("smtp_url", mode="before")
    @classmethod
    def _blank_smtp_is_none(cls, value: object) -> object:
        return _blank_secret_is_none(value)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("smtp://", "smtps://")):
            raise ValueError("VALUECHAIN_SMTP_URL must be an smtp:// or smtps:// URL")
        return value

    @field_validator("mail_backoff_s")
    @classmethod
    def _backoff(cls, delays: tuple[float, ...]) -> tuple[float, ...]:
        if not delays or any(delay < 0 for delay in delays):
            raise ValueError("mail_backoff_s: at least one delay, none negative")
        return delays

    def secrets(self) -> dict[str, str | None]:
        password = urlsplit(self.smtp_url.get_secret_value()).password if self.smtp_url else None
        return {**super().secrets(), "VALUECHAIN_SMTP_URL (its password)": password}


class NetworkSettings(UnchainedConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_NETWORK_")
    service: ClassVar[str] = "network"

    # --- the referral programme (services/network/referrals/): its terms until the first
    # PUT /v1/referral-programme, which then holds them in network's database.
    # A referral counts when the referred customer's first purchase falls within this many days of signup.
    referral_window_days: int = Field(90, ge=1, le=3650)
    # The referrer's reward: an offer of this value offer template, or these loyalty points (not both).
    referral_reward_template_id: str | None = None
    referral_reward_points: int | None = Field(None, ge=1)
    # --- end of the referral programme
    # --- stakeholders and partner performance (issue 16 §4)
    # A stakeholder's customer is active when its last purchase (voids left out) is this recent.
    active_customer_days: int = Field(365, ge=1, le=3650)
    # --- webhooks (services/network/webhooks/, docs/partners.md) ---
    # Hosts and CIDRs a webhook URL may point at although private, loopback, link-local...
    # (JSON list, e.g. ["127.0.0.1", "10.0.0.0/8", "hooks.internal"]); http:// only for them.
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_connect_timeout_s: float = Field(5.0, gt=0)
    webhook_read_timeout_s: float = Field(15.0, gt=0)
    # Seconds before the 2nd, 3rd, ... attempt at one event (jittered by +-webhook_retry_jitter):
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h, 20 h: ten attempts over about 3 days.
    webhook_retry_schedule_s: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 86400, 72000)
    webhook_retry_jitter: float = Field(0.2, ge=0, lt=1)
    # A Retry-After (429/503) longer than this is cut to it.
    webhook_max_retry_after_s: float = Field(36000.0, gt=0)
    # A subscription whose deliveries have all failed for this long is disabled.
    webhook_disable_after_days: float = Field(5.0, gt=0)
    # Deliveries one subscription has in flight at once (per network process).
    webhook_in_flight: int = Field(64, ge=1, le=1000)
    # The circuit breaker: after this many consecutive failures stop calling for the cool-down.
    webhook_breaker_failures: int = Field(10, ge=1)
    webhook_breaker_cooldown_s: float = Field(30.0, gt=0)
    # After a secret rotation the old secret keeps signing (a second signature) this long.
    webhook_secret_overlap_h: float = Field(24.0, ge=0)
    # How often each network process re-reads the subscriptions (those other processes changed).
    webhook_refresh_s: float = Field(5.0, gt=0)
    # --- end of webhooks ---


class ValueSettings(UnchainedConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_VALUE_")
    service: ClassVar[str] = "value"

    # The product areas an idea may name (an idea naming another is 422). JSON in the
    # environment: ["app", "delivery"].
    idea_product_areas: tuple[str, ...] = ("product", "service", "delivery", "website", "app", "pricing", "other")

    @field_validator("idea_product_areas")
    @classmethod
    def _areas(cls, areas: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(area.strip() for area in areas))
        if not cleaned or not all(0 < len(area) <= 50 for area in cleaned):
            raise ValueError("idea_product_areas: at least one area, each 1 to 50 characters")
        return cleaned

    # Next best offer's Beta prior: this many pseudo-offers at the template's overall rate,
    # itself shrunk towards the default rate (services/value/nbo/service.py).
    nbo_prior_strength: float = Field(2.0, gt=0)
    nbo_default_rate: float = Field(0.05, gt=0, lt=1)

    # How often each value process looks for scheduled campaigns that are due (and launches them).
    campaign_schedule_poll_s: float = Field(30.0, gt=0)


class LifecycleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_LIFECYCLE_")
    service: ClassVar[str] = "lifecycle"

    # Its stage changes, which other services and partners act on, have a durable consumer
    # of their own (services/lifecycle/stages/handlers.py) that lingers 15 ms; nothing waits
    # on the rest (loyalty, cohorts, profiles, playbooks, tickets) in a chain, and they
    # linger 250 ms, as engage's, value's and network's do. A micro-batch of the stage
    # changes alone is applied and published in a few milliseconds, not after every other
    # spec's work on the same events; 15 ms rather than 20 kept the p99 at 200 purchases/s
    # on PostgreSQL under 50 ms in every run, for ~1% more CPU (docs/benchmarks.md, "Stop 22").
    consumer_linger_s: float = Field(0.25, ge=0, le=1)
    consumer_group_linger_s: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"stage-changes": 0.015}
    )

    # --- loyalty (issue 15 §4) ---
    # The loyalty sweep (expire due points, re-judge tiers): every this many seconds (0 = only
    # on request, POST /v1/loyalty/sweeps).
    loyalty_sweep_interval_s: float = Field(3600.0, ge=0)
    # --- tickets (issue 15 §2) ---
    # How often the SLA check looks for tickets past a first-response or resolution due time.
    ticket_sla_check_s: float = Field(60.0, gt=0, le=3600)
    # Cost to serve: what an hour of handling a ticket costs (comments' and notes' minutes × this).
    service_cost_per_hour: Decimal = Field(Decimal("30"), ge=0)
    # The currency of that rate: identify's reporting currency (identify skips a cost in another).
    service_cost_currency: Currency = Field("USD", validate_default=True)
    # --- stages: the sweep and the rules' constants (docs/lifecycle.md) ---
    # The sweep re-evaluates every customer this often (0: only on request or a rule change).
    sweep_interval_s: float = Field(3600.0, ge=0)
    # Customers per chunk: one statement evaluates a chunk, one transaction writes it.
    sweep_chunk: int = Field(5000, ge=100, le=100_000)
    # How long the sweep's lease holds without renewal (renewed after each chunk): a
    # replica that died mid-sweep holds the others off this long.
    sweep_lease_s: float = Field(300.0, gt=0)
    # Expected days between purchases of a customer with one purchase (recency_ratio).
    default_purchase_interval_days: float = Field(90.0, gt=0)
    # A detractor or high-effort answer, or an escalated ticket, counts this many days.
    signal_window_days: float = Field(90.0, gt=0)


class GatewayStoreSettings(SuiteSettings):
    """Where the gateway keeps its own state (API keys, the audit log, export jobs).

    Here rather than in gateway/settings.py because `valuechain migrate` (shared/db/migrations.py)
    migrates the gateway's database with the services' and shared/ does not import the gateway.
    """

    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_GATEWAY_")

    # Empty: SQLite in <var_dir>/gateway.db.
    database_url: str = ""

    @model_validator(mode="after")
    def _local_database(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / 'gateway.db'}"
        return self

    def secrets(self) -> dict[str, str | None]:
        password = make_url(self.database_url).password if self.database_url else None
        return {**super().secrets(), "VALUECHAIN_GATEWAY_DATABASE_URL (its password)": password}


SETTINGS_CLASSES: dict[str, type[ServiceSettings]] = {
    cls.service: cls for cls in (IdentifySettings, EngageSettings, NetworkSettings, ValueSettings, LifecycleSettings)
}


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's class; a service the suite does not know (a test's) gets the common fields."""

    known = SETTINGS_CLASSES.get(service)
    if known is not None:
        return known
    return type(
        f"{service.capitalize()}Settings",
        (ServiceSettings,),
        {
            "model_config": SettingsConfigDict(env_prefix=f"VALUECHAIN_{service.upper()}_"),
            "service": service,
            "__annotations__": {"service": ClassVar[str]},
        },
    )


def service_settings(service: str, **overrides: Any) -> ServiceSettings:
    """Read `VALUECHAIN_<SERVICE>_*` (and the suite-wide variables) into the service's class."""

    return settings_class(service)(**overrides)


def env_variable(cls: type[BaseSettings], field: str) -> str:
    """The environment variable `cls` reads `field` from."""

    info = cls.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


# --- handing settings out -----------------------------------------------------------

_current: ContextVar[SuiteSettings | None] = ContextVar("valuechain_settings", default=None)
S = TypeVar("S", bound=SuiteSettings)


def current_settings(cls: type[S]) -> S:
    """The running app's settings (set per request and for the app's tasks by shared/service/app.py).

    Outside an app (a script, a unit test) they are read from the environment, afresh
    each call: nothing is cached, so a changed environment is seen at once.
    """

    settings = _current.get()
    return settings if isinstance(settings, cls) else cls()


def set_current(settings: SuiteSettings) -> Token[SuiteSettings | None]:
    """Make `settings` current in this context; returns the token to reset it with."""

    return _current.set(settings)


def reset_current(token: Token[SuiteSettings | None]) -> None:
    _current.reset(token)
