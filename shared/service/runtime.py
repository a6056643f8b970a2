"""What a service is (`ServiceDefinition`) and what runs while it runs (`Runtime`).

`start_runtime` opens the database, connects to NATS in the background, starts the
leases (shared/db/leases.py: what one replica of the service does at a time), the
outbox relay and the consumers (each waits for its lease), builds the service's own state and runs its start
hooks; `stop_runtime` stops all of it, each step bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic

from fastapi import APIRouter
from sqlalchemy import MetaData
from typing_extensions import TypeVar

from shared.db.database import Database
from shared.db.leases import Leases
from shared.events.bus import Bus
from shared.events.consumer import ConsumerRunner, ConsumerSpec, consumer_groups
from shared.events.messaging import MessagingTables
from shared.events.relay import OutboxRelay
from shared.nats_auth import load_credentials
from shared.observability.metrics import Metrics
from shared.settings import ServiceSettings

log = logging.getLogger("valuechain.app")

# Covariant: a start hook that needs only part of a state (a Protocol) takes the whole.
# Defaults to None, the state of a service that keeps none, so that such a service's
# `ServiceDefinition(...)` needs no type argument. (typing_extensions: `default=` is
# Python 3.13's typing; it comes with pydantic and fastapi.)
StateT = TypeVar("StateT", covariant=True, default=None)


@dataclass
class Runtime(Generic[StateT]):
    """What the lifespan builds and the request handlers use (typed app state).

    `state` holds the service's own long-lived objects (identify's refit runner), as
    its ServiceDefinition's `state` builds them: declared and typed, never attributes
    attached to the runtime later. None for a service that has none.
    """

    settings: ServiceSettings
    db: Database
    bus: Bus
    relay: OutboxRelay
    consumers: list[ConsumerRunner]
    metrics: Metrics
    state: StateT
    # What this replica holds of the work one replica does at a time (shared/db/leases.py).
    leases: Leases
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def start_leased(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work()` (a schedule, a loop) in one replica of the service at a time: the one
        holding the lease `name`; the others stand by and take it over when that one dies."""

        self.tasks.append(asyncio.create_task(self.leases.run_leased(name, work), name=name))


@dataclass
class ServiceDefinition(Generic[StateT]):
    name: str
    description: str
    metadata: MetaData
    messaging: MessagingTables
    routers: list[APIRouter] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    # Builds the service's own state (Runtime.state) from the runtime, once the database
    # is open and before the start hooks run; None: the service keeps no state of its own.
    state: Callable[[Runtime[Any]], StateT] | None = None
    # Called with the Runtime once the database is open (e.g. to fail jobs a restart
    # interrupted, or to start a schedule); they may add tasks to runtime.tasks.
    on_start: list[Callable[[Runtime[StateT]], Awaitable[None]]] = field(default_factory=list)


async def start_runtime(definition: ServiceDefinition[StateT], settings: ServiceSettings) -> Runtime[StateT]:
    metrics = Metrics(definition.name)
    db = Database.connect(
        settings.database_url,
        service=definition.name,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    # Its own NATS user (shared/nats_auth.py); no password is a configuration error, said at start.
    credentials = load_credentials(settings.var_dir, definition.name, settings.nats_password)
    bus = Bus(settings.nats_url, name=f"valuechain-{definition.name}", stream=settings.stream, credentials=credentials)
    leases = Leases(db, definition.messaging.leases, ttl_s=settings.lease_ttl_s, renew_s=settings.lease_renew_s)
    relay = OutboxRelay(
        db,
        definition.messaging,
        bus,
        metrics,
        batch=settings.outbox_batch,
        poll_s=settings.outbox_poll_s,
        lease=leases.want("relay"),
        mark_delay_s=settings.outbox_mark_delay_s,
    )
    # Events name their schema under the gateway's public address (shared/events/messaging.py dataschema).
    db.info.update(
        {"messaging": definition.messaging, "notify": relay.notify, "public_base_url": settings.public_base_url}
    )
    consumers = [
        ConsumerRunner(group, settings=settings, db=db, bus=bus, metrics=metrics, leases=leases)
        for group in consumer_groups(definition.name, definition.consumers)
    ]
    # The state's builder gets the runtime (its database, its task list) before the state is in it.
    runtime: Runtime[Any] = Runtime(settings, db, bus, relay, consumers, metrics, state=None, leases=leases)
    if definition.state is not None:
        runtime.state = definition.state(runtime)
    leases.start()
    runtime.tasks.append(asyncio.create_task(bus.connect(), name="nats-connect"))
    runtime.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    for runner in consumers:
        runner.start()
    bus.on_reconnect(_notify_async(relay))
    for hook in definition.on_start:
        await hook(runtime)
    return runtime


def _notify_async(relay: OutboxRelay) -> Callable[[], Coroutine[Any, Any, None]]:
    async def callback() -> None:
        relay.notify()  # catch up on whatever piled up while NATS was away

    return callback


STOP_STEP_TIMEOUT_S = 10.0


async def _bounded(step: str, awaitable: Awaitable[Any]) -> None:
    """Stopping must end: a step that does not finish in time is logged, with the stacks
    of the tasks still running, and left behind."""

    try:
        await asyncio.wait_for(awaitable, timeout=STOP_STEP_TIMEOUT_S)
    except TimeoutError:
        pending = [task for task in asyncio.all_tasks() if not task.done() and task is not asyncio.current_task()]
        stacks = {
            task.get_name(): [f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack(limit=8)]
            for task in pending
        }
        log.error("stopping timed out", extra={"step": step, "tasks": stacks})


async def stop_runtime(runtime: Runtime[Any]) -> None:
    for runner in runtime.consumers:
        await _bounded(f"consumer {runner.name}", runner.stop())
    for task in runtime.tasks:
        task.cancel()
    await _bounded("background tasks", asyncio.gather(*runtime.tasks, return_exceptions=True))
    # Given up last, once nothing that held them runs: another replica takes them at once.
    await _bounded("leases", runtime.leases.stop())
    await _bounded("nats", runtime.bus.close())
    await _bounded("database", runtime.db.dispose())
