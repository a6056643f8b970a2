"""The NATS JetStream connection and the explicit provisioning of stream and consumers.

Reconnects are unbounded, with a capped back-off and pings frequent enough that a
dead connection is noticed in seconds, so a service outlives a NATS restart.
Streams and consumers are created or updated at start (and after every
reconnect, in case the server came back empty), never left to `pull_subscribe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger("valuechain.bus")

STREAM_SUBJECTS = ["crm.>"]
DUPLICATE_WINDOW_S = 120.0


def stream_config(name: str) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=STREAM_SUBJECTS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
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


async def ensure_stream(js: JetStreamContext, name: str) -> None:
    config = stream_config(name)
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


class Bus:
    """One NATS connection per process, connected in the background with retries."""

    def __init__(self, url: str, *, name: str, stream: str = "CRM"):
        self.url = url
        self.name = name
        self.stream = stream
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.connected = asyncio.Event()
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        # Bumped on every (re)connect so long-running loops can re-provision.
        self.generation = 0

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_reconnect.append(callback)

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def connect(self) -> None:
        """Connect, retrying forever: the service starts even while NATS is down."""

        delay = 0.2
        while True:
            try:
                self.nc = await nats.connect(
                    self.url,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    reconnected_cb=self._reconnected,
                    disconnected_cb=self._disconnected,
                    error_cb=self._error,
                )
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "try again"
                log.warning("nats connect failed, retrying", extra={"error": repr(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.js = self.nc.jetstream(timeout=5)
        await self._provision_stream()
        self.generation += 1
        self.connected.set()
        log.info("nats connected", extra={"url": self.url})

    async def _provision_stream(self) -> None:
        delay = 0.2
        while True:
            try:
                assert self.js is not None, "connected"
                await ensure_stream(self.js, self.stream)
                return
            except Exception as exc:  # noqa: BLE001 - JetStream may still be starting
                log.warning("stream provisioning failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reconnected(self) -> None:
        # The server may have come back without our stream (a fresh store).
        try:
            assert self.js is not None, "reconnected after connecting"
            await ensure_stream(self.js, self.stream)
        except Exception as exc:  # noqa: BLE001 - the consumers re-provision too
            log.warning("stream provisioning after reconnect failed", extra={"error": repr(exc)})
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
        log.debug("nats error", extra={"error": repr(exc)})

    async def close(self) -> None:
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await self.nc.close()
