"""docker-compose.yml and deploy/ stay consistent with the service layout.

No Docker engine is needed: the file is parsed and checked structurally.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shared.settings import SERVICE_PORTS, SERVICES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"
APPS = [*SERVICES, "gateway"]
NATS_NODES = ["nats-1", "nats-2", "nats-3"]
NATS_URL = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def depends_of(service: dict) -> dict[str, dict]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: {"condition": "service_started"} for name in depends}
    return depends


def test_every_component_is_declared(services):
    expected = {*NATS_NODES, "postgres", "migrate", *SERVICES, "gateway"}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"
    assert set(SERVICES) == {"identify", "engage", "network", "value", "lifecycle"}


def _version(image: str) -> tuple[int, ...]:
    match = re.fullmatch(r"nats:(\d+)\.(\d+)\.(\d+)-alpine", image)
    assert match, f"{image!r}: pin a full version of the alpine variant (it has wget for the healthcheck)"
    return tuple(int(part) for part in match.groups())


def _command(service: dict) -> list[str]:
    return service["command"] if isinstance(service["command"], list) else service["command"].split()


@pytest.mark.parametrize("name", NATS_NODES)
def test_nats_runs_three_jetstream_nodes_at_2_12_3_or_later_each_with_its_volume(services, name):
    """Jepsen's 2025 analysis of NATS 2.12.1 found acknowledged writes lost under some faults;
    2.12.3 fixed them. Every node keeps its own store and answers its healthcheck."""

    nats = services[name]
    assert _version(nats["image"]) >= (2, 12, 3)
    command = _command(nats)
    assert command[command.index("--name") + 1] == name
    assert "-m" in command
    data = [str(volume).split(":")[0] for volume in nats["volumes"] if str(volume).endswith(":/data")]
    assert data == [f"{name}-data"]
    assert "8222" in " ".join(nats["healthcheck"]["test"])
    assert nats["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", NATS_NODES)
def test_each_node_routes_to_all_three_as_the_route_user(services, name):
    from shared.nats_auth import password_variable
    from valuechain.nats_setup import ROUTE_USER

    command = _command(services[name])
    routes = command[command.index("--routes") + 1].split(",")
    variable = password_variable(ROUTE_USER)
    assert routes == [
        f"nats-route://{ROUTE_USER}:${{{variable}:?set {variable} (valuechain compose-secrets)}}@{node}:6222"
        for node in NATS_NODES
    ]


def test_the_nodes_write_with_fsync_always_into_their_volume_and_form_one_cluster():
    from valuechain.nats_setup import TEMPLATE

    text = TEMPLATE.read_text()
    jetstream = re.search(r"^jetstream \{(.*?)^\}", text, flags=re.M | re.S)
    assert jetstream, "a jetstream block"
    assert 'store_dir: "/data"' in jetstream.group(1)
    assert re.search(r"^\s*sync_interval: always$", jetstream.group(1), flags=re.M)
    cluster = re.search(r"^cluster \{(.*?)^\}", text, flags=re.M | re.S)
    assert cluster, "a cluster block"
    assert 'listen: "0.0.0.0:6222"' in cluster.group(1)
    assert 'user: "route", password: $VALUECHAIN_ROUTE_NATS_PASSWORD' in cluster.group(1)


# --- internal credentials (docs/security.md) -------------------------------------------------

REQUIRED = re.compile(r"^\$\{(VALUECHAIN_[A-Z_]+):\?[^}]+\}$")


def required_variable(value: str) -> str:
    """The variable a `${NAME:?message}` value reads (compose refuses to start without it)."""

    match = REQUIRED.match(value)
    assert match, f"{value!r} is not a required variable"
    return match.group(1)


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_requires_the_generated_users_with_passwords_from_the_environment(services, node):
    from shared.nats_auth import ADMIN_USER, GATEWAY_USER, password_variable
    from valuechain.nats_setup import ROUTE_USER, TEMPLATE, template

    nats = services[node]
    command = nats["command"] if isinstance(nats["command"], list) else nats["command"].split()
    config = command[command.index("-c") + 1]
    mounts = {str(volume).split(":")[1]: str(volume).split(":")[0] for volume in nats["volumes"]}
    assert mounts[config].lstrip("./") == "deploy/nats/nats-server.conf"
    assert TEMPLATE.read_text() == template(), "stale: run python -m valuechain.nats_setup"
    referenced = set(re.findall(r"password: \$(\w+)", TEMPLATE.read_text()))
    users = {ADMIN_USER, GATEWAY_USER, *SERVICES, ROUTE_USER}
    assert referenced == {password_variable(user) for user in users}
    env = env_of(nats)
    assert {name: required_variable(value) for name, value in env.items() if name in referenced} == {
        name: name for name in referenced
    }


@pytest.mark.parametrize("name", [*SERVICES, "gateway", "migrate"])
def test_each_process_logs_in_to_nats_as_its_own_user(services, name):
    from shared.nats_auth import ADMIN_USER, password_variable

    env = env_of(services[name])
    user = ADMIN_USER if name == "migrate" else name
    passwords = {key for key in env if "_NATS_" in key and key.endswith("_PASSWORD")}
    assert passwords == {password_variable(user)}, "one password, its own"
    assert required_variable(env[password_variable(user)]) == password_variable(user)
    assert env["VALUECHAIN_NATS_URL"] == NATS_URL


def test_migrate_provisions_nats_r3_once_every_node_is_healthy(services):
    for node in NATS_NODES:
        assert depends_of(services["migrate"])[node]["condition"] == "service_healthy"
    assert env_of(services["migrate"])["VALUECHAIN_STREAM_REPLICAS"] == "3"


@pytest.mark.parametrize("name", APPS)
def test_the_gateway_and_the_services_share_the_internal_secret(services, name):
    env = env_of(services[name])
    assert required_variable(env["VALUECHAIN_INTERNAL_SECRET"]) == "VALUECHAIN_INTERNAL_SECRET"


def test_only_the_gateway_is_published(services):
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}


def test_compose_secrets_prints_every_variable_compose_requires(capsys):
    from valuechain import cli

    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(VALUECHAIN_[A-Z_]+):\?", text))
    assert cli.main(["compose-secrets"]) == 0
    printed = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert required <= set(printed), sorted(required - set(printed))
    assert all(len(value) >= 40 for value in printed.values())
    # nats-server reads a variable starting with a digit or `-` as a number or a date, and fails.
    assert all(value[0].isalpha() for value in printed.values())


def test_postgres_is_healthchecked_and_runs_the_init_script(services):
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    mounts = [str(volume) for volume in postgres["volumes"]]
    assert any(
        m.split(":")[0].lstrip("./") == "deploy/postgres/init-databases.sql" and "/docker-entrypoint-initdb.d/" in m
        for m in mounts
    ), mounts


def test_init_sql_creates_every_service_database():
    sql = INIT_SQL.read_text()
    created = {m.lower() for m in re.findall(r"create\s+database\s+\"?(\w+)\"?", sql, flags=re.I)}
    assert set(SERVICES) <= created, f"not created: {sorted(set(SERVICES) - created)}"


@pytest.mark.parametrize("name", APPS)
def test_app_has_healthcheck_and_waits_for_healthy_infrastructure(services, name):
    app = services[name]
    test = app["healthcheck"]["test"]
    assert test and test[0] in ("CMD", "CMD-SHELL")
    assert "/readyz" in " ".join(test)
    depends = depends_of(app)
    for infra in (*NATS_NODES, "postgres"):
        assert depends.get(infra, {}).get("condition") == "service_healthy", (name, infra, depends)


@pytest.mark.parametrize("service", SERVICES)
def test_service_uses_its_own_database_and_the_compose_nats(services, service):
    app = services[service]
    env = env_of(app)
    url = env[f"VALUECHAIN_{service.upper()}_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    assert url.rsplit("/", 1)[1] == service
    assert "@postgres:5432/" in url
    assert env["VALUECHAIN_NATS_URL"] == NATS_URL
    command = " ".join(app["command"]) if isinstance(app["command"], list) else app["command"]
    assert f"services.{service}.main:create_app" in command
    assert "0.0.0.0" in command
    assert f"--port {SERVICE_PORTS[service]}" in command
    assert depends_of(app).get("migrate", {}).get("condition") == "service_completed_successfully"


def test_no_two_services_share_a_database(services):
    databases = [env_of(services[s])[f"VALUECHAIN_{s.upper()}_DATABASE_URL"].rsplit("/", 1)[1] for s in SERVICES]
    assert len(set(databases)) == len(SERVICES)


def test_migrate_is_one_shot_over_every_database(services):
    migrate = services["migrate"]
    command = " ".join(migrate["command"]) if isinstance(migrate["command"], list) else migrate["command"]
    assert "valuechain migrate" in command
    assert migrate.get("restart", "no") == "no"
    assert depends_of(migrate)["postgres"]["condition"] == "service_healthy"
    env = env_of(migrate)
    for service in SERVICES:
        assert env[f"VALUECHAIN_{service.upper()}_DATABASE_URL"].rsplit("/", 1)[1] == service


def test_gateway_routes_to_every_service_and_is_published(services):
    gateway = services["gateway"]
    env = env_of(gateway)
    for service, port in SERVICE_PORTS.items():
        assert env[f"VALUECHAIN_GATEWAY_{service.upper()}_URL"] == f"http://{service}:{port}"
    assert "VALUECHAIN_ADMIN_API_KEY" in env
    assert "${VALUECHAIN_ADMIN_API_KEY" in env["VALUECHAIN_ADMIN_API_KEY"]
    assert any(str(port).split(":")[-1] == "8000" for port in gateway["ports"])
    depends = depends_of(gateway)
    for service in SERVICES:
        assert depends.get(service, {}).get("condition") == "service_healthy", service


def test_all_apps_share_one_image_built_from_deploy_dockerfile(services):
    builds = {name: services[name].get("build") for name in [*APPS, "migrate"]}
    images = {services[name].get("image") for name in [*APPS, "migrate"]}
    assert all(builds.values()), builds
    normalised = {
        (b["context"], b.get("dockerfile", "Dockerfile")) if isinstance(b, dict) else (b, "Dockerfile")
        for b in builds.values()
    }
    assert normalised == {(".", "deploy/Dockerfile")}
    assert len(images) == 1


def test_dockerfile_installs_the_lock_then_the_project():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, flags=re.M)
    lock = dockerfile.index("pip install -r requirements.lock")
    project = dockerfile.index("pip install --no-deps .")
    assert lock < project


@pytest.mark.parametrize("name", APPS)
def test_healthcheck_asks_the_port_the_app_listens_on(services, name):
    app = services[name]
    port = SERVICE_PORTS.get(name, 8000)
    assert f"127.0.0.1:{port}/readyz" in " ".join(app["healthcheck"]["test"])
    command = " ".join(app["command"]) if isinstance(app["command"], list) else app["command"]
    assert f"--port {port}" in command


def test_database_urls_use_the_postgres_credentials(services):
    postgres_env = env_of(services["postgres"])
    user, password = postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"]
    for name in [*SERVICES, "migrate"]:
        for key, url in env_of(services[name]).items():
            if key.endswith("_DATABASE_URL"):
                assert url.startswith(f"postgresql+asyncpg://{user}:{password}@postgres:5432/"), (name, key)
    owners = set(re.findall(r"owner\s+\"?(\w+)\"?", INIT_SQL.read_text(), flags=re.I))
    assert owners == {user}
