"""Alembic, once per database: each service, and the gateway, has its own history and version table.

`upgrade(name)` brings one database to head; `upgrade_all()` does every one (the
pre-start step of `valuechain run`). Each `migrations/env.py` calls `run_env()`
with its own metadata. The gateway's database (API keys, audit log, export jobs)
is migrated like a service's, from gateway/migrations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import Script
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import SERVICES, GatewayStoreSettings, service_settings

ROOT = Path(__file__).resolve().parent.parent.parent
SERVICES_DIR = ROOT / "services"
GATEWAY = "gateway"
# Every database `valuechain migrate` brings to head: the five services', then the gateway's.
DATABASES = (*SERVICES, GATEWAY)


def migrations_dir(name: str) -> Path:
    return ROOT / GATEWAY / "migrations" if name == GATEWAY else SERVICES_DIR / name / "migrations"


def database_url(name: str) -> str:
    return GatewayStoreSettings().database_url if name == GATEWAY else service_settings(name).database_url


def version_table(service: str) -> str:
    return f"{service}_alembic_version"


def alembic_config(service: str, url: str | None = None, script_location: Path | None = None) -> Config:
    url = url or database_url(service)
    config = Config()
    config.set_main_option("script_location", str(script_location or migrations_dir(service)))
    # Dated file names keep each history readable in order.
    config.set_main_option(
        "file_template", "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s"
    )
    # The date in the file name is UTC, whatever the machine's zone.
    config.set_main_option("timezone", "UTC")
    config.attributes["service"] = service
    config.attributes["url"] = url
    return config


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _in_own_thread(fn: Callable[..., object], *args: object) -> None:
    """Alembic's env runs its own event loop, so never call it from inside one."""

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with ThreadPoolExecutor(1) as executor:
        executor.submit(fn, *args).result()


def upgrade(service: str, url: str | None = None, revision: str = "head", script_location: Path | None = None) -> None:
    config = alembic_config(service, url, script_location)
    _ensure_sqlite_dir(config.attributes["url"])
    _in_own_thread(command.upgrade, config, revision)


def upgrade_all() -> None:
    for name in DATABASES:
        upgrade(name)


def revisions(name: str, url: str | None = None) -> tuple[set[str], set[str]]:
    """The revisions `name`'s database is at, and the heads of its history in this code:
    equal once `valuechain migrate` of this version has run (`valuechain wait-migrations`,
    the Kubernetes pods' init containers). Raises when the database cannot be reached."""

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config(name, url)
    heads = set(ScriptDirectory.from_config(config).get_heads())
    found: list[set[str]] = []

    def current(connection: Connection) -> set[str]:
        context = MigrationContext.configure(connection, opts={"version_table": version_table(name)})
        return set(context.get_current_heads())

    async def read() -> None:
        engine = create_async_engine(config.attributes["url"], poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                found.append(await connection.run_sync(current))
        finally:
            await engine.dispose()

    _in_own_thread(asyncio.run, read())
    return found[0], heads


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's env.py."""

    from alembic import context

    config = context.config
    service = config.attributes["service"]
    url = config.attributes["url"]
    unmanaged = tuple(target_metadata.info.get("unmanaged_prefixes", ()))
    options = dict(
        target_metadata=target_metadata,
        # Tables and indexes a migration makes for one database only (FTS5 tables,
        # trigram indexes): no model describes them, so autogenerate must not drop them.
        include_name=lambda name, type_, parent: not (name and unmanaged and name.startswith(unmanaged)),
        version_table=version_table(service),
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_async())


class MigrationError(ValueError):
    """A revision that cannot be made as asked (unknown service, no message)."""


def make_revision(service: str, message: str, script_location: Path | None = None) -> Path | None:
    """Autogenerate a dated revision of `service` against its models: `make migration`.

    The history is applied to a scratch SQLite database, then Alembic compares it with
    the service's metadata. Returns the new file, or None when the models and the
    history already agree (no empty revision is written). `script_location` points at
    another copy of the service's migrations (the tests use one).
    """

    import tempfile

    if service not in DATABASES:
        raise MigrationError(f"unknown service {service!r}: expected one of {', '.join(DATABASES)}")
    message = (message or "").strip()
    if not message:
        raise MigrationError('a migration needs a message: MESSAGE="what it changes"')
    written: list[Path] = []

    def skip_if_empty(context: Any, revision: Any, directives: list[Any]) -> None:
        if directives[0].upgrade_ops.is_empty():
            directives[:] = []

    def generate() -> None:
        config = alembic_config(service, url, script_location)
        script = command.revision(config, message=message, autogenerate=True, process_revision_directives=skip_if_empty)
        if script:  # [] when skip_if_empty dropped it
            assert isinstance(script, Script), "a list of several only comes of a history with several heads"
            written.append(Path(script.path))

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/{service}.db"
        upgrade(service, url, script_location=script_location)
        _in_own_thread(generate)
    return written[0] if written else None
