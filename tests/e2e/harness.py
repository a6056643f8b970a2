"""The whole suite as `make run` starts it (`valuechain run`), on free loopback ports
and a temporary data directory, driven through the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx

from shared.settings import SERVICES
from tests.support import POSTGRES_URL, free_consecutive_ports, free_ports

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str = "e2e") -> str:
    """`prefix` with a random suffix of letters and digits: the shared suite keeps every earlier
    test's data, so emails, external ids and names a test looks for are made with this."""

    return f"{prefix}{uuid.uuid4().hex[:10]}"


def unique_email(name: str = "e2e") -> str:
    return f"{unique(name)}@example.com"


class RunningSuite:
    """`valuechain run` on free ports; with `replicas` > 1, `--replicas N`: the services' ports
    in one block (replica i at port + 5i, the supervisor's plan) and the gateways' in another;
    with `nats_cluster` > 1, `--nats-cluster N` (node i on the base ports + i - 1)."""

    def __init__(
        self, var_dir: Path, database_urls: dict[str, str] | None = None, replicas: int = 1, *, nats_cluster: int = 1
    ):
        self.var_dir = var_dir
        self.replicas = replicas
        names = (*SERVICES, "gateway", "nats", "nats_monitor")
        self.ports = dict(zip(names, free_ports(len(names))))
        if replicas > 1:
            services = free_consecutive_ports(len(SERVICES) * replicas)
            self.ports.update({name: services + i for i, name in enumerate(SERVICES)})
            self.ports["gateway"] = free_consecutive_ports(replicas)
        self.database_urls = database_urls or {}
        self.process: subprocess.Popen | None = None
        self.log_path = var_dir / "suite.log"
        self.admin_key = "e2e-admin-key-" + os.urandom(8).hex()
        self.run_args: list[str] = []  # after `valuechain run`: --nats-cluster 3, ...
        self.nats_nodes = nats_cluster
        if nats_cluster > 1:  # node i on the base ports + i - 1, as the flag lays them out
            self.ports |= {
                name: free_consecutive_ports(nats_cluster) for name in ("nats", "nats_monitor", "nats_routes")
            }
            self.run_args += ["--nats-cluster", str(nats_cluster)]
        if replicas > 1:
            self.run_args += ["--replicas", str(replicas)]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway (the first is `gateway_url`)."""

        return [f"http://127.0.0.1:{self.ports['gateway'] + i}" for i in range(self.replicas)]

    def service_url(self, name: str) -> str:
        """The service's first replica."""

        return f"http://127.0.0.1:{self.ports[name]}"

    def service_urls(self, name: str) -> list[str]:
        """Every replica of the service."""

        step = len(SERVICES)
        return [f"http://127.0.0.1:{self.ports[name] + i * step}" for i in range(self.replicas)]

    @property
    def nats_url(self) -> str:
        """The suite's NATS as its admin (whose password `valuechain run` made under var/nats);
        on a cluster every node, comma-separated (`shared.settings.nats_servers` splits it)."""

        from shared.nats_auth import ADMIN_USER, load_credentials

        admin = load_credentials(self.var_dir, ADMIN_USER, None)
        return ",".join(
            f"nats://{admin.user}:{admin.password}@127.0.0.1:{self.ports['nats'] + i}" for i in range(self.nats_nodes)
        )

    @property
    def internal_secret(self) -> str:
        return (self.var_dir / "internal-secret").read_text().strip()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VALUECHAIN_VAR_DIR=str(self.var_dir),
            VALUECHAIN_NATS_URL=f"nats://127.0.0.1:{self.ports['nats']}",
            VALUECHAIN_NATS_MONITOR_PORT=str(self.ports["nats_monitor"]),
            VALUECHAIN_GATEWAY_PORT=str(self.ports["gateway"]),
            VALUECHAIN_ADMIN_API_KEY=self.admin_key,
            # Webhooks to the tests' receivers on loopback (docs/partners.md, "Subscribing").
            VALUECHAIN_NETWORK_WEBHOOK_ALLOW_HOSTS='["127.0.0.1"]',
        )
        if "nats_routes" in self.ports:
            env["VALUECHAIN_NATS_CLUSTER_PORT"] = str(self.ports["nats_routes"])
        for name in SERVICES:
            env[f"VALUECHAIN_{name.upper()}_PORT"] = str(self.ports[name])
            env[f"VALUECHAIN_GATEWAY_{name.upper()}_URL"] = ",".join(self.service_urls(name))
            if name in self.database_urls:
                env[f"VALUECHAIN_{name.upper()}_DATABASE_URL"] = self.database_urls[name]
        return env

    def start(self, timeout: float | None = None) -> None:
        """Start it and wait until every gateway counts every replica ready (90 s, and 60 s
        more for each further replica of everything: ten processes start slower than five)."""

        if timeout is None:
            timeout = 90 + 60 * (self.replicas - 1)
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child writes to its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "valuechain", "run", *self.run_args],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"valuechain run exited with {self.process.returncode}:\n{self.tail()}")
            if all(self._all_ready(url) for url in self.gateway_urls):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the suite did not become ready:\n{self.tail()}")

    @staticmethod
    def _all_ready(gateway_url: str) -> bool:
        """The gateway is ready and counts every replica of every service healthy."""

        try:
            answer = httpx.get(f"{gateway_url}/readyz", timeout=1)
        except httpx.HTTPError:
            return False
        replicas = answer.json().get("replicas", {}) if answer.status_code == 200 else None
        return replicas is not None and all(count["healthy"] == count["total"] for count in replicas.values())

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10
        )


async def postgres_databases(tag: str) -> tuple[dict[str, str], list]:
    """One fresh PostgreSQL database per service when CI runs on PostgreSQL; else none (SQLite)."""

    if not POSTGRES_URL:
        return {}, []
    from tests.support import make_database_url

    urls, drops = {}, []
    for name in SERVICES:
        url, drop = await make_database_url(name, Path("/nonexistent"))
        urls[name] = url
        drops.append(drop)
    return urls, drops


@contextmanager
def scratch_suite(var_dir: Path, tag: str, replicas: int = 1, gateway_port: int | None = None):
    """A RunningSuite on its own fresh data (fresh PostgreSQL databases when CI runs on
    PostgreSQL; the replicas of a service share its one), stopped and its databases dropped
    afterwards; its gateway on `gateway_port` when given (links must name it beforehand)."""

    urls, drops = asyncio.run(postgres_databases(tag))
    suite = RunningSuite(var_dir, urls, replicas)
    if gateway_port is not None:
        suite.ports["gateway"] = gateway_port
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()
        for drop in drops:
            asyncio.run(drop())
