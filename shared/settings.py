"""Per-service settings from environment variables.

Every service reads `VALUECHAIN_<SERVICE>_*` for its own knobs and the suite-wide
`VALUECHAIN_NATS_URL` / `VALUECHAIN_VAR_DIR`. The same code runs on SQLite and
PostgreSQL: only the database URL changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_PORTS = {"identify": 8101, "engage": 8102, "network": 8103, "value": 8104, "lifecycle": 8105}
SERVICES = tuple(SERVICE_PORTS)


def var_dir() -> Path:
    return Path(os.environ.get("VALUECHAIN_VAR_DIR", "var")).resolve()


def nats_url() -> str:
    return os.environ.get("VALUECHAIN_NATS_URL", "nats://127.0.0.1:4222")


class ServiceSettings(BaseSettings):
    """Settings common to every stage service; `service_settings(name)` binds the prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    service: str
    database_url: str = ""
    port: int = 0
    nats_url: str = Field(default_factory=nats_url)
    stream: str = "CRM"
    # Consumers: how many events one pull asks for, how long a pull lingers,
    # and how often a failing event is retried before it is dead-lettered.
    consumer_batch: int = 500
    consumer_expires_s: float = 5.0
    consumer_max_deliver: int = 5
    consumer_ack_wait_s: float = 30.0
    consumer_backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0, 15.0)
    outbox_poll_s: float = 0.5
    outbox_batch: int = 500
    log_level: str = "INFO"
    gil_switch_interval_s: float = 0.0005
    # The cyclic garbage collector: what is alive once the service has started is
    # frozen out of its walks, and the youngest generation is collected every this
    # many allocations (CPython's default, 700, made the consumers that emit an
    # event per event spend a fifth of their time collecting).
    gc_gen0_threshold: int = 10_000


def service_settings(service: str, **overrides) -> ServiceSettings:
    """Read `VALUECHAIN_<SERVICE>_*` into ServiceSettings, filling the defaults."""

    cls = type(
        f"{service.capitalize()}Settings",
        (ServiceSettings,),
        {"model_config": SettingsConfigDict(env_prefix=f"VALUECHAIN_{service.upper()}_", extra="ignore")},
    )
    settings = cls(service=service, **overrides)
    if not settings.database_url:
        settings.database_url = f"sqlite+aiosqlite:///{var_dir() / (service + '.db')}"
    if not settings.port:
        settings.port = SERVICE_PORTS.get(service, 0)
    return settings
