"""scores ranked by CLV: the (predicted_clv) and (segment, predicted_clv) indexes again

Revision ID: 6a2d4f8c1e57
Revises: 5e7a1c9d2b40
Create Date: 2026-12-05 00:30:00

Lists sorted by CLV, overall and within a segment, walk these. A refit on SQLite drops
them before it rewrites every score and builds them again after its last chunk
(services/identify/portfolio/refits.py): kept row by row, they made that write 10x
slower. They exist at head, as the models say, whenever no refit is writing.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '6a2d4f8c1e57'
down_revision: Union[str, Sequence[str], None] = '5e7a1c9d2b40'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('customer_scores', schema=None) as batch_op:
        batch_op.create_index('ix_customer_scores_clv', ['predicted_clv', 'customer_id'], unique=False)
        batch_op.create_index('ix_customer_scores_segment_clv', ['segment', 'predicted_clv', 'customer_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customer_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_scores_segment_clv')
        batch_op.drop_index('ix_customer_scores_clv')
