"""customer search: substring index and sort indexes

Revision ID: 5e7a1c9d2b40
Revises: 5b7e2c1d9a40
Create Date: 2026-12-04 23:30:00

The substring index differs by database (services/identify/search/repository.py):

- SQLite: a contentless FTS5 table with the trigram tokenizer, `customer_search`, whose
  rowids `customer_search_rows` maps to customer ids (a customer's own rowid is not
  stable: VACUUM may renumber a table without an INTEGER PRIMARY KEY). Changes and
  deletes of customers reach it through triggers, so every path that edits customers
  (the API, merges) keeps it current without knowing about it. New customers are
  indexed by the code that creates them, set-based (services/identify/search/
  repository.py `index_new_customers`): a per-row insert trigger cost an import of
  CDNOW's 23,570 new customers ~0.9 s (1,010 ms against 250 ms set-based). A later
  batch migration that rebuilds `customers` drops its triggers:
  tests/services/identify/test_search.py checks they exist at head.
- PostgreSQL: pg_trgm's GIN index on the searched columns joined by a unit separator.

Both are filled from the existing rows here.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '5e7a1c9d2b40'
down_revision: Union[str, Sequence[str], None] = '5b7e2c1d9a40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_SEARCHED = ("name", "email", "phone", "phone_key", "external_id")

# Must be the expression of services/identify/search/repository.py's PG_SEARCH_TEXT.
PG_SEARCH_TEXT = " || E'\\x1f' || ".join(f"coalesce({column}, '')" for column in _SEARCHED)


def _values(prefix: str) -> str:
    return ", ".join(f"{prefix}.{column}" for column in _SEARCHED)


_ROW_OF = "(SELECT id FROM customer_search_rows WHERE customer_id = {}.id)"
_CHANGED = " OR ".join(f"old.{column} IS NOT new.{column}" for column in _SEARCHED)

SQLITE_UP = [
    "CREATE TABLE customer_search_rows (id INTEGER PRIMARY KEY, customer_id VARCHAR(36) NOT NULL UNIQUE)",
    f"CREATE VIRTUAL TABLE customer_search USING fts5({', '.join(_SEARCHED)}, "
    "content='', columnsize=0, tokenize='trigram')",
    f"""CREATE TRIGGER customer_search_update AFTER UPDATE OF {', '.join(_SEARCHED)} ON customers
    WHEN {_CHANGED} BEGIN
        INSERT INTO customer_search (customer_search, rowid, {', '.join(_SEARCHED)})
            VALUES ('delete', {_ROW_OF.format('old')}, {_values('old')});
        INSERT INTO customer_search (rowid, {', '.join(_SEARCHED)}) VALUES ({_ROW_OF.format('new')}, {_values('new')});
    END""",
    f"""CREATE TRIGGER customer_search_delete AFTER DELETE ON customers BEGIN
        INSERT INTO customer_search (customer_search, rowid, {', '.join(_SEARCHED)})
            VALUES ('delete', {_ROW_OF.format('old')}, {_values('old')});
        DELETE FROM customer_search_rows WHERE customer_id = old.id;
    END""",
    "INSERT INTO customer_search_rows (customer_id) SELECT id FROM customers ORDER BY id",
    f"INSERT INTO customer_search (rowid, {', '.join(_SEARCHED)}) "
    f"SELECT r.id, {_values('c')} FROM customers c JOIN customer_search_rows r ON r.customer_id = c.id",
    # Name sort: SQLite compares text by code point (BINARY), as PostgreSQL's "C" below.
    "CREATE INDEX ix_customers_search_name ON customers (name, id)",
]
SQLITE_DOWN = [
    "DROP INDEX ix_customers_search_name",
    "DROP TRIGGER customer_search_delete",
    "DROP TRIGGER customer_search_update",
    "DROP TABLE customer_search",
    "DROP TABLE customer_search_rows",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX ix_customers_search_trgm ON customers USING gin (({PG_SEARCH_TEXT}) gin_trgm_ops)",
    'CREATE INDEX ix_customers_search_name ON customers (name COLLATE "C", id)',
]
POSTGRES_DOWN = ["DROP INDEX ix_customers_search_name", "DROP INDEX ix_customers_search_trgm"]


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_created', ['created_at', 'id'], unique=False)
    with op.batch_alter_table('purchase_summaries', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_summaries_last', ['last_purchase_at', 'customer_id'], unique=False)
    statements = POSTGRES_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = POSTGRES_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN
    for statement in statements:
        op.execute(statement)
    with op.batch_alter_table('purchase_summaries', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_summaries_last')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_created')
