"""transactions listed by time: GET /v1/transactions reads everyone's newest first

Without it a period of 200,000 transactions was a full scan and a sort on SQLite
(210 ms); with it a range scan in index order (0.5 ms).

Revision ID: 5b1e0c7a9d42
Revises: 143fb039d6d2
Create Date: 2026-12-04 23:30:00.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '5b1e0c7a9d42'
down_revision: Union[str, Sequence[str], None] = '143fb039d6d2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_occurred', ['occurred_at', 'id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_occurred')
