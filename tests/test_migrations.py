"""Each service's Alembic history produces exactly its models' schema (a model
changed without a migration fails here), on a real SQLite database."""

import pytest
from alembic import command

from shared.migrations import alembic_config, upgrade
from shared.settings import SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models(service, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / service}.db"
    upgrade(service, url)
    command.check(alembic_config(service, url))  # raises when autogenerate finds a difference
