"""The suite's NATS: its users (from the services' definitions), the server's configuration,
and the provisioning `valuechain migrate` does as the NATS admin.

- `server_config(var_dir)` writes `<var>/nats/nats-server.conf` for the embedded server
  (`valuechain run`), every password written in, each made on first run
  (`<var>/nats/<user>.password`, mode 0600) unless its setting gives it;
- `python -m valuechain.nats_setup` writes deploy/nats/nats-server.conf, the same users
  with each password read from its environment variable (docker-compose); a test fails
  when that file is stale; and deploy/k8s/base/nats/auth.conf, the same for Kubernetes;
- `cluster_configs(var_dir, nodes)` writes one configuration per node of the embedded
  three-node cluster (`valuechain run --nats-cluster 3`): the same users, JetStream with
  `sync_interval: always` under `<var>/jetstream-<i>`, cluster routes authenticated as the
  user `route` (its password made like the others', `<var>/nats/route.password`);
- `provision_all(...)` waits for JetStream to answer (on a cluster: for its meta leader),
  then creates or updates the stream, every service's durable consumers and the gateway's
  key-value bucket, as the admin, with the replicas asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import APIError, BadRequestError
from pydantic import SecretStr

from shared.events.consumer import consumer_groups, provision_consumers
from shared.nats_auth import (
    ADMIN_USER,
    GATEWAY_USER,
    NATS_DIR,
    RATELIMITS_BUCKET,
    NatsCredentials,
    NatsUser,
    admin_user,
    ensure_passwords,
    gateway_user,
    password_variable,
    render_authorization,
    service_user,
)
from shared.service.runtime import ServiceDefinition
from shared.settings import SERVICES, ServiceSettings, nats_servers, service_settings

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nats" / "nats-server.conf"
# The same users for the Kubernetes manifests' StatefulSet (included by its nats.conf).
K8S_AUTH = ROOT / "deploy" / "k8s" / "base" / "nats" / "auth.conf"
CONFIG_FILE = "nats-server.conf"
# Rate-limit state: one key per API key, gone after an hour without use (a bucket idle
# that long is full again), kept in memory (a restart refills every bucket).
RATELIMITS = KeyValueConfig(bucket=RATELIMITS_BUCKET, history=1, ttl=3600.0, storage=StorageType.MEMORY)
# The cluster: its name, the user its routes authenticate as, the store each node keeps
# in the container (docker-compose) and how long provisioning waits for a meta leader.
CLUSTER_NAME = "valuechain"
ROUTE_USER = "route"
COMPOSE_STORE = "/data"
COMPOSE_CLUSTER_PORT = 6222
JETSTREAM_READY_TIMEOUT_S = 30.0
# JetStream answers these while a cluster elects its meta leader or a stream's peers are
# not all known yet: "temporarily unavailable" (10008), "insufficient resources" (10023),
# "no suitable peers for placement" (10005); provisioning tries again until its deadline.
TRANSIENT_API_ERRORS = frozenset({10005, 10008, 10023})


def definitions() -> dict[str, ServiceDefinition[Any]]:
    return {service: importlib.import_module(f"services.{service}.main").DEFINITION for service in SERVICES}


def users(settings: dict[str, ServiceSettings] | None = None) -> list[NatsUser]:
    """Every user of the suite: the admin, the gateway, one per service with its consumers."""

    settings = settings or {service: service_settings(service) for service in SERVICES}
    found = [admin_user(), gateway_user()]
    durables = {
        name: [group.durable for group in consumer_groups(name, d.consumers)] for name, d in definitions().items()
    }
    for name in durables:
        others = [durable for other, theirs in durables.items() if other != name for durable in theirs]
        found.append(service_user(name, durables[name], settings[name].stream, others))
    return found


def given_passwords(var_dir: Path) -> dict[str, SecretStr | None]:
    """The passwords settings give (the others come from, or go to, files under `<var>/nats`)."""

    from gateway.settings import GatewaySettings
    from valuechain.supervisor import SupervisorSettings

    given: dict[str, SecretStr | None] = {
        ADMIN_USER: SupervisorSettings(var_dir=var_dir).nats_admin_password,
        GATEWAY_USER: GatewaySettings(var_dir=var_dir).nats_password,
    }
    for service in SERVICES:
        given[service] = service_settings(service, var_dir=var_dir).nats_password
    return given


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, mode 0600 from the start (it holds passwords)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def server_config(var_dir: Path, extra: Iterable[NatsUser] = ()) -> Path:
    """Write the embedded server's configuration (rewritten each run: a new consumer in the
    code gets its permissions), making the passwords that are missing. `extra`: users
    besides the suite's (the tests' own services)."""

    everyone = [*users(), *extra]
    given = given_passwords(var_dir)
    passwords = ensure_passwords(var_dir, {user.name: given.get(user.name) for user in everyone})
    path = Path(var_dir) / NATS_DIR / CONFIG_FILE
    header = "# Written by `valuechain run` at each start from the services' definitions: edits are lost.\n"
    write_private(path, header + render_authorization(everyone, passwords))
    return path


# --- the cluster ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClusterNode:
    """One node of the embedded cluster on loopback: node i (1, 2, 3) listens on the base
    ports + i - 1 (clients 4222.., routes 6222.., monitoring 8222..)."""

    index: int
    client_port: int
    cluster_port: int
    monitor_port: int
    store: Path

    @property
    def name(self) -> str:
        return f"nats-{self.index}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


def cluster_nodes(
    var_dir: Path, size: int, *, client_port: int, cluster_port: int, monitor_port: int
) -> list[ClusterNode]:
    return [
        ClusterNode(
            i, client_port + i - 1, cluster_port + i - 1, monitor_port + i - 1, Path(var_dir) / f"jetstream-{i}"
        )
        for i in range(1, size + 1)
    ]


def render_cluster(store: str, listen: str, route_password: str | None, routes: Iterable[str] = ()) -> str:
    """JetStream (fsync on every write: Jepsen's advice after it found acknowledged writes
    lost under faults in NATS 2.12.1) and the cluster, its routes authenticated as `route`.
    Without `route_password` the password is its environment variable (docker-compose)."""

    password = json.dumps(route_password) if route_password is not None else f"${password_variable(ROUTE_USER)}"
    lines = [
        "jetstream {",
        f"  store_dir: {json.dumps(store)}",
        "  sync_interval: always",
        "}",
        "cluster {",
        f"  name: {json.dumps(CLUSTER_NAME)}",
        f"  listen: {json.dumps(listen)}",
        f"  authorization {{ user: {json.dumps(ROUTE_USER)}, password: {password} }}",
    ]
    routes = list(routes)
    if routes:
        lines += ["  routes: [", *(f"    {json.dumps(route)}" for route in routes), "  ]"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def cluster_configs(var_dir: Path, nodes: list[ClusterNode], extra: Iterable[NatsUser] = ()) -> list[Path]:
    """One configuration per node of the embedded cluster (rewritten each run, as
    `server_config`'s): the suite's users, the node's name, ports and store, and routes
    to every node (a node ignores the route to itself)."""

    everyone = [*users(), *extra]
    given = given_passwords(var_dir)
    passwords = ensure_passwords(
        var_dir, {**{user.name: given.get(user.name) for user in everyone}, ROUTE_USER: route_password_given()}
    )
    route = passwords.pop(ROUTE_USER)
    routes = [f"nats-route://{ROUTE_USER}:{route}@127.0.0.1:{node.cluster_port}" for node in nodes]
    authorization = render_authorization(everyone, passwords)
    paths = []
    for node in nodes:
        node.store.mkdir(parents=True, exist_ok=True)
        path = Path(var_dir) / NATS_DIR / f"{node.name}.conf"
        text = (
            f"# Written by `valuechain run --nats-cluster {len(nodes)}` at each start: edits are lost.\n"
            f"server_name: {json.dumps(node.name)}\n"
            f'listen: "127.0.0.1:{node.client_port}"\n'
            f'http: "127.0.0.1:{node.monitor_port}"\n'
            + authorization
            + render_cluster(str(node.store), f"127.0.0.1:{node.cluster_port}", route, routes)
        )
        write_private(path, text)
        paths.append(path)
    return paths


def route_password_given() -> SecretStr | None:
    value = os.environ.get(password_variable(ROUTE_USER), "").strip()
    return SecretStr(value) if value else None


def template() -> str:
    return (
        "# nats-server's configuration for docker-compose.yml's three nodes, generated by\n"
        "# `python -m valuechain.nats_setup` from the services' definitions (do not edit: a test\n"
        "# fails when it is stale). Each password is read from the environment variable named,\n"
        "# set in the nats services; each node's name and its routes are on its command line.\n"
        + render_authorization(users(), None)
        + render_cluster(COMPOSE_STORE, f"0.0.0.0:{COMPOSE_CLUSTER_PORT}", None)
    )


def k8s_auth() -> str:
    return (
        "# nats-server's users for deploy/k8s (included by nats.conf beside this file), generated by\n"
        "# `python -m valuechain.nats_setup` from the services' definitions (do not edit: a test\n"
        "# fails when it is stale). Each password is read from the environment variable named,\n"
        "# set in the StatefulSet nats from the Secret valuechain-credentials.\n" + render_authorization(users(), None)
    )


# --- provisioning ------------------------------------------------------------------------


def transient(exc: BaseException) -> bool:
    """JetStream is not ready yet (no meta leader, peers not known): worth another try."""

    if isinstance(exc, NatsTimeoutError | NoRespondersError | asyncio.TimeoutError):
        return True
    return isinstance(exc, APIError) and (exc.code == 503 or exc.err_code in TRANSIENT_API_ERRORS)


async def patiently(deadline: float, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """`call(...)`, again after a transient error until `deadline` (time.monotonic())."""

    while True:
        try:
            return await call(*args, **kwargs)
        except Exception as exc:
            if not transient(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.25)


async def ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Create the key-value bucket, or bring an existing one to `config`'s replicas (the
    server refuses to create it again with another configuration)."""

    try:
        await js.create_key_value(config)
    except BadRequestError:
        info = await js.stream_info(f"KV_{config.bucket}")
        if info.config.num_replicas != config.replicas:
            await js.update_stream(dataclasses.replace(info.config, num_replicas=config.replicas))


async def provision_all(
    nats_url: str,
    admin: NatsCredentials,
    *,
    timeout: float = 5.0,
    replicas: int | None = None,
    ready_timeout: float = JETSTREAM_READY_TIMEOUT_S,
) -> list[str]:
    """Create or update the stream, every service's durable consumers and the `ratelimits`
    bucket, as the admin; returns what was provisioned, one line each. `nats_url` may name
    several servers (a cluster); `replicas` overrides VALUECHAIN_STREAM_REPLICAS. It first
    waits up to `ready_timeout` for JetStream to answer: a cluster answers once it has
    elected its meta leader, and places an R3 stream once its peers are known."""

    nc = await nats.connect(
        servers=nats_servers(nats_url),
        connect_timeout=timeout,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        **admin.connect_options(),
    )
    overrides = {} if replicas is None else {"stream_replicas": replicas}
    try:
        js = nc.jetstream(timeout=timeout)
        deadline = time.monotonic() + ready_timeout
        await patiently(deadline, js.account_info)
        done = []
        for name, definition in definitions().items():
            settings = service_settings(name, **overrides)
            await patiently(deadline, provision_consumers, js, definition.consumers, settings)
            durables = ", ".join(group.durable for group in consumer_groups(name, definition.consumers)) or "none"
            copies = f" (R{settings.stream_replicas})" if settings.stream_replicas > 1 else ""
            done.append(f"{name}: stream {settings.stream}{copies}, consumers {durables}")
        bucket = dataclasses.replace(RATELIMITS, replicas=settings.stream_replicas)
        await patiently(deadline, ensure_bucket, js, bucket)
        done.append(f"gateway: key-value bucket {RATELIMITS_BUCKET}")
        return done
    finally:
        await nc.close()


def main() -> None:
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(template())
    print(f"wrote {TEMPLATE}")
    K8S_AUTH.parent.mkdir(parents=True, exist_ok=True)
    K8S_AUTH.write_text(k8s_auth())
    print(f"wrote {K8S_AUTH}")


if __name__ == "__main__":
    main()
