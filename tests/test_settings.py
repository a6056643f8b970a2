"""One settings mechanism (issue 11, point 5): pydantic-settings classes for every process,
each documented in docs/operations.md's one table, each default written once, handed out
per app (never cached for the process), and no placeholder secret outside development."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from shared.service.runtime import ServiceDefinition
from shared.settings import (
    SERVICES,
    SETTINGS_CLASSES,
    IdentifySettings,
    ServiceSettings,
    SuiteSettings,
    current_settings,
    service_settings,
)
from tests.shared.test_light_reads import DEFINITION as LIGHT_DEFINITION
from valuechain.supervisor import Supervisor, SupervisorSettings

ROOT = Path(__file__).resolve().parent.parent
CLASSES = (SuiteSettings, *SETTINGS_CLASSES.values(), GatewaySettings, SupervisorSettings)
# Read by docker-compose.yml only (it builds the database URLs), so no class holds it.
COMPOSE_ONLY = {"VALUECHAIN_DB_PASSWORD"}


def _variable(cls, name: str, field) -> str:
    """The environment variable a field is read from, as the table writes it."""

    if isinstance(field.validation_alias, str):
        return field.validation_alias
    if issubclass(cls, ServiceSettings) and name in ServiceSettings.model_fields:
        return f"VALUECHAIN_<SERVICE>_{name.upper()}"
    if cls is GatewaySettings and name.removesuffix("_url") in SERVICES:
        return "VALUECHAIN_GATEWAY_<SERVICE>_URL"
    return f"{cls.model_config['env_prefix']}{name.upper()}"


def _documented() -> list[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(VALUECHAIN_[A-Z0-9_<>]+)` \|", section, flags=re.MULTILINE)


def test_every_setting_is_in_the_one_table_and_the_table_names_only_settings():
    expected = {_variable(cls, name, field) for cls in CLASSES for name, field in cls.model_fields.items()}
    documented = _documented()
    assert len(documented) == len(set(documented)), "a variable has two rows"
    assert sorted(expected - set(documented)) == [], "settings missing from docs/operations.md#configuration"
    assert sorted(set(documented) - expected - COMPOSE_ONLY) == [], "rows that no settings class reads"


def test_the_names_the_table_gives_are_the_ones_read(monkeypatch):
    monkeypatch.setenv("VALUECHAIN_NATS_URL", "nats://elsewhere:4333")
    monkeypatch.setenv("VALUECHAIN_VAR_DIR", "/srv/crm")
    monkeypatch.setenv("VALUECHAIN_ENGAGE_CONSUMER_BATCH", "7")
    monkeypatch.setenv("VALUECHAIN_GATEWAY_VALUE_URL", "http://value.internal:9")
    monkeypatch.setenv("VALUECHAIN_READY_TIMEOUT_S", "5")
    monkeypatch.setenv("VALUECHAIN_GATEWAY_URL", "http://gw.internal")
    for settings in (*(service_settings(s) for s in SERVICES), GatewaySettings(), SupervisorSettings()):
        # The suite-wide ones under one name, whatever the class's own prefix.
        assert (settings.nats_url, settings.var_dir) == ("nats://elsewhere:4333", Path("/srv/crm"))
    assert service_settings("engage").consumer_batch == 7
    assert service_settings("value").consumer_batch == 500  # another service's prefix
    assert service_settings("value").database_url == "sqlite+aiosqlite:////srv/crm/value.db"
    assert GatewaySettings().value_url == "http://value.internal:9"
    supervisor = SupervisorSettings()
    assert (supervisor.ready_timeout_s, supervisor.gateway_url) == (5.0, "http://gw.internal")
    assert GatewaySettings().port == 8000  # VALUECHAIN_GATEWAY_URL is the command's, not a gateway field


def test_each_default_is_written_once():
    """The suite's addresses live in shared/settings.py; every other module takes them from there."""

    literals = re.compile(
        r"127\.0\.0\.1:(4222|8000|810[1-5])\b|\b(port|PORT)\w*\s*(:\s*\w+\s*)?=\s*(4222|8000|810[1-5])\b"
    )
    found = []
    for package in ("shared", "services", "gateway", "valuechain"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "shared" / "settings.py" or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if literals.search(line.split("#", 1)[0]):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


# --- secrets ------------------------------------------------------------------------


def test_secrets_have_no_default_and_do_not_print(monkeypatch):
    monkeypatch.delenv("VALUECHAIN_ADMIN_API_KEY", raising=False)
    assert SuiteSettings.model_fields["admin_api_key"].default is None
    assert SuiteSettings().admin_api_key is None
    monkeypatch.setenv("VALUECHAIN_ADMIN_API_KEY", "  ")  # compose's `${VALUECHAIN_ADMIN_API_KEY:-}`
    assert SuiteSettings().admin_api_key is None
    monkeypatch.setenv("VALUECHAIN_ADMIN_API_KEY", "s3cr3t-value-long-enough")
    assert "s3cr3t" not in repr(GatewaySettings())


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"VALUECHAIN_ADMIN_API_KEY": "changethis"}, "VALUECHAIN_ADMIN_API_KEY holds the placeholder"),
        (
            {"VALUECHAIN_IDENTIFY_DATABASE_URL": "postgresql+asyncpg://crm:crm@db/identify"},
            "VALUECHAIN_IDENTIFY_DATABASE_URL (its password) holds the placeholder",
        ),
    ],
)
def test_placeholder_secrets_are_refused_outside_development(monkeypatch, variables, refused):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VALUECHAIN_ENVIRONMENT", raising=False)
    assert service_settings("identify").environment == "development"  # a laptop: allowed
    monkeypatch.setenv("VALUECHAIN_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match=re.escape(refused)):
        service_settings("identify")


def test_real_secrets_pass_in_production(monkeypatch):
    monkeypatch.setenv("VALUECHAIN_ENVIRONMENT", "production")
    monkeypatch.setenv("VALUECHAIN_ADMIN_API_KEY", "Yq3-5mX2rW0kTzq8VhB1nLcJ")
    monkeypatch.setenv("VALUECHAIN_IDENTIFY_DATABASE_URL", "postgresql+asyncpg://crm:Vq1Rz8pK@db/identify")
    assert service_settings("identify").admin_api_key.get_secret_value() == "Yq3-5mX2rW0kTzq8VhB1nLcJ"
    assert GatewaySettings().environment == "production"
    assert service_settings("engage").database_url.startswith("sqlite")  # no password: nothing to refuse


# --- handed out per app ----------------------------------------------------------------


async def test_two_apps_in_one_process_each_validate_with_their_own_settings(suite):
    """Request validation (the date bounds of a purchase) reads the app's settings, not the
    process's: the lru_cache global this replaced gave both apps the first one's."""

    async def refusal(floor: str) -> str:
        identify = await suite.start("identify", date_floor=floor)
        response = await identify.client.post(
            "/v1/transactions",
            json={"customer_id": "c", "amount": "1", "currency": "USD", "occurred_at": "1980-01-01T00:00:00Z"},
        )
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["field"] == "body.occurred_at"
        return error["message"]

    assert "must be from 2000-01-01T00:00:00Z" in await refusal("2000-01-01T00:00:00Z")
    assert "must be from 1990-01-01T00:00:00Z" in await refusal("1990-01-01T00:00:00Z")


async def test_background_tasks_get_the_apps_settings(suite):
    seen: list[ServiceSettings] = []

    async def record() -> None:
        seen.append(current_settings(ServiceSettings))

    async def start_a_task(runtime) -> None:
        runtime.tasks.append(asyncio.create_task(record()))

    definition = ServiceDefinition(**{**LIGHT_DEFINITION.__dict__, "on_start": [start_a_task]})
    handle = await suite.start_definition(definition, consumer_batch=123)
    await asyncio.gather(*handle.runtime.tasks[-1:])
    assert seen == [handle.runtime.settings] and seen[0].consumer_batch == 123
    # The test's own context was left alone: outside an app, the environment's.
    assert current_settings(IdentifySettings) is not handle.runtime.settings


def test_a_bad_value_stops_the_command_naming_the_setting(monkeypatch):
    monkeypatch.setenv("VALUECHAIN_NATS_MONITOR_PORT", "eighty")
    with pytest.raises(
        SystemExit,
        match=r"^invalid setting: VALUECHAIN_NATS_MONITOR_PORT: Input should be a valid "
        r"integer, unable to parse string as an integer \(got 'eighty'\)$",
    ):
        Supervisor()
    monkeypatch.delenv("VALUECHAIN_NATS_MONITOR_PORT")
    monkeypatch.setenv("VALUECHAIN_LIFECYCLE_PORT", "eighty")
    with pytest.raises(SystemExit, match=r"^invalid setting: VALUECHAIN_LIFECYCLE_PORT: .*'eighty'"):
        Supervisor()
    monkeypatch.delenv("VALUECHAIN_LIFECYCLE_PORT")
    monkeypatch.setenv("VALUECHAIN_NATS_URL", "nats://elsewhere:4333")
    monkeypatch.setenv("VALUECHAIN_GATEWAY_IDENTIFY_URL", "identify")
    with pytest.raises(SystemExit, match=r"^invalid setting: VALUECHAIN_GATEWAY_IDENTIFY_URL: .*'identify'"):
        Supervisor()
