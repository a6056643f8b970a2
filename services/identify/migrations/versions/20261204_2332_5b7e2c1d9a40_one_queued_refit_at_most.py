"""one queued refit at most

Revision ID: 5b7e2c1d9a40
Revises: 5c3e9a1f7b20
Create Date: 2026-12-04 23:30:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '5b7e2c1d9a40'
down_revision: Union[str, Sequence[str], None] = '5c3e9a1f7b20'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Migrations run while the service is stopped: a refit still queued (before this
    # change several could be) was left by a stopped process, and start-up would fail
    # it anyway. Failing them first lets the unique index be made.
    op.execute(
        "UPDATE portfolio_refits SET status = 'failed', "
        "failure = 'interrupted by a restart; request a new refit' WHERE status = 'queued'"
    )
    with op.batch_alter_table('portfolio_refits', schema=None) as batch_op:
        batch_op.create_index(
            'uq_portfolio_refits_queued', ['status'], unique=True,
            sqlite_where=sa.text("status = 'queued'"), postgresql_where=sa.text("status = 'queued'"),
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('portfolio_refits', schema=None) as batch_op:
        batch_op.drop_index('uq_portfolio_refits_queued', sqlite_where=sa.text("status = 'queued'"),
                            postgresql_where=sa.text("status = 'queued'"))
