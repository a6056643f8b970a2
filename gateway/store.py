"""The gateway's own database: API keys, the audit log and export jobs.

`VALUECHAIN_GATEWAY_DATABASE_URL` (SQLite `<var_dir>/gateway.db` by default), with its own
Alembic history in gateway/migrations, brought to head by `valuechain migrate` like each
service's. It is opened with the services' `Database` (one SQLite writer, WAL readers;
a pool on PostgreSQL). The gateway's modules add their tables to `Base`.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

from shared.db.database import NAMING_CONVENTION, Database


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the gateway's own
    __table__: ClassVar[Table]


def open_store(url: str) -> Database:
    return Database.connect(url, service="gateway")
