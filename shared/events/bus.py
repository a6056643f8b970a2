"""The NATS JetStream connection, and the explicit provisioning of stream and consumers.

Reconnects are unbounded, with a capped back-off and pings frequent enough that a
dead connection is noticed in seconds, so a service outlives a NATS restart. Each
process connects as its own NATS user (shared/nats_auth.py).

Streams and consumers are provisioned by `valuechain migrate` as the NATS admin
(`provision`, below), never by the services, whose users may not create or update
them, and never left to `pull_subscribe`. A service finds its consumers missing
(a new NATS with an empty store, a migrate not run) in its readiness and logs, and
checks again until they are there (shared/events/consumer.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.nats_auth import NatsCredentials
from shared.settings import nats_servers

log = logging.getLogger("valuechain.bus")

STREAM_SUBJECTS = ["crm.>"]
DUPLICATE_WINDOW_S = 120.0


def stream_config(name: str, *, max_age_s: float = 0.0, replicas: int = 1) -> StreamConfig:
    """The stream: every `crm.>` subject on file, each event kept `max_age_s` (0: for ever),
    on `replicas` servers of a JetStream cluster (its consumers inherit the count).

    Direct gets are allowed: the event feed (services/network/feed) reads pages of the
    stream with batched direct gets, with no consumer to create or clean up. Fast-ingest
    batches are allowed (nats-server ≥ 2.14; an older one ignores the setting): the relay
    publishes a batch of many events as one, acknowledged every hundred events rather than
    each (shared/events/publisher.py)."""

    return StreamConfig(
        name=name,
        subjects=STREAM_SUBJECTS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=max_age_s,
        allow_direct=True,
        allow_batched=True,
        num_replicas=replicas,
    )


def consumer_config(
    durable: str, subjects: list[str], *, max_ack_pending: int, ack_wait_s: float = 30.0
) -> ConsumerConfig:
    return ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subjects=subjects,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        # Delivery attempts are bounded by our own dead-lettering, which needs to
        # see the last failure; the server must not drop the message first.
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
    )


async def ensure_stream(js: JetStreamContext, name: str, *, max_age_s: float = 0.0, replicas: int = 1) -> None:
    config = stream_config(name, max_age_s=max_age_s, replicas=replicas)
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": name})
        return
    await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    # CONSUMER.CREATE with a name creates the consumer or updates it in place.
    await js.add_consumer(stream, config)


async def provision(
    js: JetStreamContext,
    stream: str,
    consumers: Iterable[ConsumerConfig],
    *,
    max_age_s: float = 0.0,
    replicas: int = 1,
) -> None:
    """Create or update `stream` and `consumers` on it (as a user allowed to: the admin)."""

    await ensure_stream(js, stream, max_age_s=max_age_s, replicas=replicas)
    for config in consumers:
        await ensure_consumer(js, stream, config)


def without_credentials(url: str) -> str:
    """`url` fit for a log line: any `user:password@` in it left out."""

    return ",".join(re.sub(r"//[^/@]*@", "//", part) for part in url.split(","))


class Bus:
    """One NATS connection per process, connected in the background with retries."""

    def __init__(self, url: str, *, name: str, stream: str = "CRM", credentials: NatsCredentials | None = None):
        self.url = url
        self.name = name
        self.stream = stream
        self.credentials = credentials
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.connected = asyncio.Event()
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        # Bumped on every (re)connect so long-running loops check their consumers again.
        self.generation = 0

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_reconnect.append(callback)

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def connect_options(self) -> dict[str, Any]:
        """`nats.connect` options of this process's connections: its user, unbounded reconnects."""

        return {
            "name": self.name,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            **(self.credentials.connect_options() if self.credentials is not None else {}),
        }

    async def connect(self) -> None:
        """Connect, retrying forever: the service starts even while NATS is down."""

        delay = 0.2
        while True:
            try:
                self.nc = await nats.connect(
                    nats_servers(self.url),
                    reconnected_cb=self._reconnected,
                    disconnected_cb=self._disconnected,
                    error_cb=self._error,
                    **self.connect_options(),
                )
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "try again"
                log.warning("nats connect failed, retrying", extra={"error": repr(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.js = self.nc.jetstream(timeout=5)
        self.generation += 1
        self.connected.set()
        log.info("nats connected", extra={"url": without_credentials(self.url)})

    async def _reconnected(self) -> None:
        self.generation += 1
        self.connected.set()
        log.info("nats reconnected")
        for callback in self._on_reconnect:
            try:
                await callback()
            except Exception as exc:  # noqa: BLE001
                log.warning("reconnect callback failed", extra={"error": repr(exc)})

    async def _disconnected(self) -> None:
        self.connected.clear()
        log.warning("nats disconnected")

    async def _error(self, exc: Exception) -> None:
        # A permissions violation is a bug or a misconfigured user: say so loudly.
        level = logging.ERROR if "permissions violation" in str(exc).lower() else logging.DEBUG
        log.log(level, "nats error", extra={"error": repr(exc)})

    async def close(self) -> None:
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await self.nc.close()
