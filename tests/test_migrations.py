"""Each service's Alembic history produces exactly its models' schema (a model
changed without a migration fails here), on a real SQLite database."""

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Column, Integer, String, Table, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from services.lifecycle.models import Base as LifecycleBase
from shared.db import migrations
from shared.db.migrations import DATABASES, SERVICES_DIR, MigrationError, alembic_config, make_revision, upgrade
from tests.support import make_database_url
from valuechain import cli


@pytest.mark.parametrize("service", DATABASES)
def test_migrations_match_the_models(service, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / service}.db"
    upgrade(service, url)
    command.check(alembic_config(service, url))  # raises when autogenerate finds a difference


# `make migration SERVICE=<name> MESSAGE="..."`: a dated revision from the models. Each test
# works on a copy of the service's history, so nothing is left in the repository.

ROOT = Path(__file__).resolve().parent.parent


def _history_copy(service: str, tmp_path: Path) -> Path:
    copy = tmp_path / service / "migrations"
    shutil.copytree(SERVICES_DIR / service / "migrations", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names


def test_a_model_change_becomes_a_dated_revision_whose_upgrade_makes_it(tmp_path):
    history = _history_copy("lifecycle", tmp_path)
    before = set((history / "versions").iterdir())
    scratch = Table(
        "scratch_tickets",
        LifecycleBase.metadata,
        Column("id", Integer, primary_key=True),
        Column("subject", String(200), nullable=False),
    )
    try:
        path = make_revision("lifecycle", "scratch tickets", script_location=history)
    finally:
        LifecycleBase.metadata.remove(scratch)
    assert path is not None and set((history / "versions").iterdir()) - before == {path}
    assert re.fullmatch(r"\d{8}_\d{4}_[0-9a-f]{12}_scratch_tickets\.py", path.name)
    assert "op.create_table('scratch_tickets'" in path.read_text()

    async def upgraded_tables() -> set[str]:
        url, drop = await make_database_url("lifecycle", tmp_path)
        try:
            await asyncio.to_thread(upgrade, "lifecycle", url, script_location=history)
            return await _tables(url)
        finally:
            await drop()

    assert "scratch_tickets" in asyncio.run(upgraded_tables())  # SQLite, or PostgreSQL when set


def test_models_that_match_the_history_generate_nothing(tmp_path, capsys, monkeypatch):
    history = _history_copy("engage", tmp_path)
    before = sorted((history / "versions").iterdir())
    assert make_revision("engage", "nothing changed", script_location=history) is None
    # Through the command too, on the copy.
    monkeypatch.setattr(migrations, "SERVICES_DIR", tmp_path)
    assert cli.main(["migration", "engage", "nothing changed"]) == 0
    assert sorted((history / "versions").iterdir()) == before
    assert "nothing to generate" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("service", "message", "refusal"),
    [
        ("tickets", "x", "unknown service 'tickets': expected one of identify, engage"),
        ("engage", "  ", "needs a message"),
    ],
)
def test_an_unknown_service_or_an_empty_message_is_refused(service, message, refusal, capsys):
    with pytest.raises(MigrationError, match=refusal):
        make_revision(service, message)
    assert cli.main(["migration", service, message]) == 2
    assert refusal in capsys.readouterr().err


def test_make_migration_refuses_missing_variables():
    result = subprocess.run(["make", "-s", "migration", "SERVICE=engage"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'a migration needs a message: MESSAGE="what it changes"' in result.stderr
