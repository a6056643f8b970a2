"""The `valuechain` command, its supervisor's building blocks, and the files that
install and run it (requirements.lock, Makefile, .ci/run).

The whole `valuechain run` is driven end to end in tests/e2e; here the pieces are
checked one by one, fast: the CLI, the environment handed to the children, NATS
started and stopped for real, restarts with back-off, SIGTERM-then-SIGKILL, and a
refusal to start over ports already taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import SERVICE_PORTS, SERVICES
from tests.support import NatsServer, free_port
from valuechain import cli, supervisor
from valuechain.supervisor import Child, Supervisor

ROOT = Path(__file__).resolve().parent.parent


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0))


# ---------------------------------------------------------------------------
# The command line


def test_the_cli_offers_run_and_migrate(capsys):
    names = {name for name, *_ in cli.COMMANDS}
    assert {"run", "migrate"} <= names
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "migrate" in out


def test_the_cli_rejects_unknown_and_missing_commands(capsys):
    for argv in ([], ["no-such-command"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
    capsys.readouterr()


def test_the_import_progress_bar_counts_the_rows_the_reader_reads(tmp_path):
    # The reader skips blank lines and a CSV header; CRLF and a last line without
    # a newline are rows like any other.
    path = tmp_path / "rows.csv"
    path.write_bytes(b"customer_external_id,occurred_at,amount\r\nc1,2026-01-01,1\r\n\r\n  \nc2,2026-01-02,2")
    assert cli._count_rows(path, header=True) == 2
    assert cli._count_rows(path, header=False) == 3
    (tmp_path / "empty.csv").write_bytes(b"")
    assert cli._count_rows(tmp_path / "empty.csv", header=True) == 0


def test_python_dash_m_valuechain_is_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "valuechain", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "migrate" in result.stdout
    script = Path(sys.executable).parent / "valuechain"
    if script.exists():  # installed by `pip install -e .`
        assert subprocess.run([str(script), "--help"], capture_output=True, timeout=60).returncode == 0


def test_migrate_brings_every_database_to_head_and_provisions_nats(tmp_path):
    server = NatsServer(tmp_path / "var" / "jetstream")  # the suite's users, passwords under var/nats
    server.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VALUECHAIN_")}
        env["VALUECHAIN_VAR_DIR"] = str(tmp_path / "var")
        env["VALUECHAIN_NATS_URL"] = server.address
        result = subprocess.run(
            [sys.executable, "-m", "valuechain", "migrate"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # The five services' databases and the gateway's own (API keys, audit log, export jobs).
        databases = sorted(p.name for p in (tmp_path / "var").glob("*.db"))
        assert databases == sorted(f"{s}.db" for s in (*SERVICES, "gateway"))
        # A durable per service, and lifecycle's stage changes on one of their own.
        assert asyncio.run(_consumers(server.url)) == {f"{s}-events" for s in SERVICES} | {"lifecycle-stage-changes"}
        assert "nats: gateway: key-value bucket ratelimits" in result.stdout
    finally:
        server.stop()


async def _consumers(url: str) -> set[str]:
    import nats

    nc = await nats.connect(url)
    try:
        return {info.name for info in await nc.jetstream().consumers_info("CRM")}
    finally:
        await nc.close()


# ---------------------------------------------------------------------------
# The supervisor's pieces


def _isolated_env(monkeypatch, tmp_path) -> dict[str, int]:
    """Free ports for everything, a temporary var dir; returns the ports."""

    for key in list(os.environ):
        if key.startswith("VALUECHAIN_") and key != "VALUECHAIN_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    ports = {name: free_port() for name in (*SERVICES, "gateway", "nats", "nats_monitor")}
    monkeypatch.setenv("VALUECHAIN_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("VALUECHAIN_NATS_URL", f"nats://127.0.0.1:{ports['nats']}")
    monkeypatch.setenv("VALUECHAIN_NATS_MONITOR_PORT", str(ports["nats_monitor"]))
    monkeypatch.setenv("VALUECHAIN_GATEWAY_PORT", str(ports["gateway"]))
    for name in SERVICES:
        monkeypatch.setenv(f"VALUECHAIN_{name.upper()}_PORT", str(ports[name]))
    return ports


def test_children_get_the_ports_and_the_gateway_follows_them(monkeypatch, tmp_path):
    ports = _isolated_env(monkeypatch, tmp_path)
    monkeypatch.setenv("VALUECHAIN_GATEWAY_VALUE_URL", "http://value.internal:9999")
    env = Supervisor().child_env()

    assert env["VALUECHAIN_VAR_DIR"] == str((tmp_path / "var").resolve())
    assert env["VALUECHAIN_NATS_URL"] == f"nats://127.0.0.1:{ports['nats']}"
    assert env["VALUECHAIN_GATEWAY_PORT"] == str(ports["gateway"])
    for name in SERVICES:
        assert env[f"VALUECHAIN_{name.upper()}_PORT"] == str(ports[name])
        if name != "value":
            assert env[f"VALUECHAIN_GATEWAY_{name.upper()}_URL"] == f"http://127.0.0.1:{ports[name]}"
    # An explicit gateway URL is the operator's choice and is kept.
    assert env["VALUECHAIN_GATEWAY_VALUE_URL"] == "http://value.internal:9999"


def test_default_ports_and_var_dir(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("VALUECHAIN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    sup = Supervisor()
    assert sup.var_dir == (tmp_path / "var").resolve()
    assert sup.ports == SERVICE_PORTS
    assert (sup.gateway_port, sup.nats_port, sup.nats_monitor_port) == (8000, 4222, 8222)
    env = sup.child_env()
    for name, port in SERVICE_PORTS.items():
        assert env[f"VALUECHAIN_GATEWAY_{name.upper()}_URL"] == f"http://127.0.0.1:{port}"


def test_services_run_under_uvicorn_with_their_factory():
    argv = supervisor.uvicorn_argv("services.identify.main:create_app", 8101)
    assert argv[:3] == [sys.executable, "-m", "uvicorn"]
    joined = " ".join(argv)
    assert "--factory services.identify.main:create_app" in joined
    assert "--host 127.0.0.1 --port 8101" in joined
    assert "--loop uvloop" in joined and "--http httptools" in joined


def test_nats_server_comes_from_the_environment():
    binary = supervisor.find_nats_server()
    assert binary and os.access(binary, os.X_OK)
    assert "nats-server" in subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout


def test_nats_starts_with_jetstream_and_monitoring_and_stops(monkeypatch, tmp_path):
    ports = _isolated_env(monkeypatch, tmp_path)
    sup = Supervisor()
    try:
        assert sup.start_nats(sup.child_env())
        assert (tmp_path / "var" / "jetstream").is_dir()
        # Its users and their passwords, private to the user running the suite.
        nats_dir = tmp_path / "var" / "nats"
        private = [nats_dir / "nats-server.conf", *(nats_dir / f"{user}.password" for user in ("admin", *SERVICES))]
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in private)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['nats_monitor']}/healthz?js-enabled-only=true", timeout=5
        ) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['nats_monitor']}/jsz", timeout=5) as response:
            assert b'"store_dir"' in response.read()
        # A second NATS on the same port is refused up front.
        assert any("NATS" in problem for problem in Supervisor().ports_in_use())
    finally:
        sup.shutdown()
    assert all(child.proc.returncode is not None for child in sup.nats_children)
    assert not supervisor.tcp_open("127.0.0.1", ports["nats"])
    assert "starting nats" in (tmp_path / "var" / "log" / "nats.log").read_text()


def _cluster_env(monkeypatch, tmp_path) -> dict[str, int]:
    from tests.support import free_consecutive_ports

    ports = _isolated_env(monkeypatch, tmp_path)
    ports |= {name: free_consecutive_ports(3) for name in ("nats", "monitor", "routes")}
    monkeypatch.setenv("VALUECHAIN_NATS_URL", f"nats://127.0.0.1:{ports['nats']}")
    monkeypatch.setenv("VALUECHAIN_NATS_MONITOR_PORT", str(ports["monitor"]))
    monkeypatch.setenv("VALUECHAIN_NATS_CLUSTER_PORT", str(ports["routes"]))
    return ports


def test_a_cluster_gives_the_children_every_node_and_r3(monkeypatch, tmp_path):
    ports = _cluster_env(monkeypatch, tmp_path)
    env = Supervisor(nats_cluster=3).child_env()
    assert env["VALUECHAIN_NATS_URL"] == ",".join(f"nats://127.0.0.1:{ports['nats'] + i}" for i in range(3))
    assert env["VALUECHAIN_STREAM_REPLICAS"] == "3"
    assert Supervisor().child_env()["VALUECHAIN_STREAM_REPLICAS"] == "1"
    monkeypatch.setenv("VALUECHAIN_STREAM_REPLICAS", "5")
    with pytest.raises(SystemExit, match="5 replicas on 3 NATS nodes"):
        Supervisor(nats_cluster=3)


def test_run_takes_nats_cluster_3_or_5(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--nats-cluster", "2"])
    assert exit_info.value.code == 2
    assert "--nats-cluster" in capsys.readouterr().err


def test_a_nats_cluster_starts_three_supervised_nodes_with_routes_and_fsync_always(monkeypatch, tmp_path):
    ports = _cluster_env(monkeypatch, tmp_path)
    sup = Supervisor(nats_cluster=3)
    try:
        assert sup.start_nats(sup.child_env())
        assert [child.name for child in sup.nats_children] == ["nats-1", "nats-2", "nats-3"]
        nats_dir = tmp_path / "var" / "nats"
        for i in range(3):
            assert (tmp_path / "var" / f"jetstream-{i + 1}").is_dir()
            config = nats_dir / f"nats-{i + 1}.conf"
            assert stat.S_IMODE(config.stat().st_mode) == 0o600
            assert "sync_interval: always" in config.read_text()
        assert stat.S_IMODE((nats_dir / "route.password").stat().st_mode) == 0o600

        def routed() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['monitor']}/jsz", timeout=5) as response:
                meta = json.loads(response.read()).get("meta_cluster", {})
            return bool(meta.get("leader")) and meta.get("cluster_size") == 3

        deadline = time.monotonic() + 20
        while not routed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert routed(), "the three nodes elected a meta leader over their routes"
        assert any("NATS nats-2 routes" in problem for problem in Supervisor(nats_cluster=3).ports_in_use())

        # Each node is supervised on its own: a killed one comes back, on the same ports and store.
        sup.nats_children[1].proc.kill()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            sup.nats_children[1].restarts and supervisor.tcp_open("127.0.0.1", ports["nats"] + 1)
        ):
            sup.sleep(0.2)
        assert sup.nats_children[1].restarts == 1 and supervisor.tcp_open("127.0.0.1", ports["nats"] + 1)
    finally:
        sup.shutdown()
    assert not any(supervisor.tcp_open("127.0.0.1", ports["nats"] + i) for i in range(3))


def test_a_child_that_exits_is_restarted_with_growing_back_off(tmp_path):
    child = Child(
        "flaky", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path / "flaky.log", backoff=0.05
    )
    child.start()
    delays = []
    deadline = time.monotonic() + 20
    while child.restarts < 3 and time.monotonic() < deadline:
        before = child.restart_at
        child.check(time.monotonic())
        if child.restart_at is not None and before is None:
            delays.append(child.backoff)
        time.sleep(0.01)
    try:
        assert child.restarts >= 3
        # The delay doubles after each exit (it is reset once a child has stayed up long enough).
        assert delays[:3] == [0.1, 0.2, 0.4]
        assert (tmp_path / "flaky.log").read_text().count("starting flaky") >= 4
    finally:
        child.kill()


def test_shutdown_terminates_then_kills_what_ignores_sigterm(monkeypatch, tmp_path):
    monkeypatch.setattr(supervisor, "STOP_TIMEOUT_S", 1.0)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('u' + 'p!', flush=True); time.sleep(60)"
    )
    polite = "import time; print('u' + 'p!', flush=True); time.sleep(60)"
    sup = Supervisor.__new__(Supervisor)
    sup.gateways = [Child("gateway", [sys.executable, "-c", stubborn], dict(os.environ), tmp_path / "gw.log")]
    sup.service_children = [Child("identify", [sys.executable, "-c", polite], dict(os.environ), tmp_path / "id.log")]
    sup.nats_children = []
    for child in sup.children():
        child.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all("up!" in c.log_path.read_text() for c in sup.children()):
        time.sleep(0.05)
    # (The log's header line holds the argv, hence the marker split in the source.)
    started = time.monotonic()
    sup.shutdown()
    assert time.monotonic() - started < 10
    assert sup.gateways[0].proc.returncode == -signal.SIGKILL
    assert sup.service_children[0].proc.returncode == -signal.SIGTERM


def test_run_refuses_to_start_over_a_port_in_use(monkeypatch, tmp_path):
    ports = _isolated_env(monkeypatch, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["gateway"]))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "valuechain", "run"],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"gateway: something already listens on 127.0.0.1:{ports['gateway']}" in result.stdout
    assert not (tmp_path / "var" / "log" / "nats.log").exists()  # nothing was started


@contextlib.contextmanager
def _valuechain_run(*args: str) -> Iterator[subprocess.Popen]:
    """`valuechain run ARGS` in the environment of the test, killed if the test fails."""

    process = subprocess.Popen(
        [sys.executable, "-m", "valuechain", "run", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_while_starting_stops_nats_and_exits_zero(monkeypatch, tmp_path):
    """SIGTERM arrives before the suite is up: whatever was started is stopped, exit code 0."""

    ports = _isolated_env(monkeypatch, tmp_path)
    with _valuechain_run() as process:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not supervisor.tcp_open("127.0.0.1", ports["nats"]):
            time.sleep(0.05)
        assert supervisor.tcp_open("127.0.0.1", ports["nats"]), "NATS never came up"
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "stopped" in out
    for name in ("nats", "gateway", *SERVICES):
        assert not supervisor.tcp_open("127.0.0.1", ports[name]), f"{name} still listens"


def test_replicas_get_consecutive_ports_and_every_gateway_every_replica(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("VALUECHAIN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    sup = Supervisor(replicas=3)
    assert sup.replica_ports("gateway") == [8000, 8001, 8002]
    assert sup.replica_ports("identify") == [8101, 8106, 8111]
    assert sup.replica_ports("lifecycle") == [8105, 8110, 8115]
    assert sorted(port for name in SERVICES for port in sup.replica_ports(name)) == list(range(8101, 8116))
    assert [sup.replica_name("value", i) for i in range(3)] == ["value-1", "value-2", "value-3"]
    env = sup.child_env()
    assert env["VALUECHAIN_GATEWAY_ENGAGE_URL"] == "http://127.0.0.1:8102,http://127.0.0.1:8107,http://127.0.0.1:8112"
    assert env["VALUECHAIN_GATEWAY_REPLICAS"] == "3"  # each gateway's share of a key's rate limit
    # One replica: the names, logs and environment of before.
    single = Supervisor()
    assert single.replica_name("value", 0) == "value"
    assert "VALUECHAIN_GATEWAY_REPLICAS" not in single.child_env()
    # Every replica's port is checked before anything starts.
    monkeypatch.setenv("VALUECHAIN_ENGAGE_PORT", "8106")  # identify-2's
    assert "engage-1 and identify-2 are both set to port 8106" in " ".join(Supervisor(replicas=2).ports_in_use())
    with pytest.raises(SystemExit):
        cli.main(["run", "--replicas", "x"])


# `valuechain run --replicas 2` for real (with --nats-cluster 3, in one suite):
# tests/e2e/test_nats_cluster_e2e.py.


# ---------------------------------------------------------------------------
# Installing and running


def test_requirements_lock_pins_every_runtime_and_test_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[_normalise(match.group(1))] = match.group(2)
    assert wanted - set(pins) == set(), "pyproject dependencies missing from requirements.lock"
    assert _normalise(project["name"]) not in pins, "the project itself is installed with --no-deps -e ."


def test_the_lock_matches_what_is_installed():
    from importlib.metadata import PackageNotFoundError, version

    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, pinned = line.strip().split("==")
            try:
                assert version(name) == pinned, f"{name}: installed {version(name)}, locked {pinned} (run make venv)"
            except PackageNotFoundError:
                pytest.fail(f"{name} is locked but not installed (run make venv)")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_has_the_entry_points():
    # Not as a sub-make of `make test`: no inherited flags, no "Entering directory".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    make = ["make", "--no-print-directory", "-f", "Makefile"]
    result = subprocess.run([*make, "-pRrq", ":"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    targets = set(re.findall(r"^([A-Za-z][\w.-]*):", result.stdout, flags=re.M))
    assert {"venv", "run", "test", "lint", "migrate", "bench", "clean"} <= targets
    dry = subprocess.run([*make, "-n", "clean"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert dry.stdout.strip() == "rm -rf var"


def test_ci_script_is_strict_bash_and_parses():
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "VALUECHAIN_TEST_POSTGRES_URL=" in text and "trap " in text
    assert "make lint" in text, "CI runs ruff and mypy before the tests"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
