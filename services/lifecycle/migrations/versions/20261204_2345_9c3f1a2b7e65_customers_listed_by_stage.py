"""customers listed by stage: GET /v1/lifecycle/customers?stage= reads one stage in id order

Revision ID: 9c3f1a2b7e65
Revises: 04e9d22ec1fe
Create Date: 2026-12-04 23:45:00.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '9c3f1a2b7e65'
down_revision: Union[str, Sequence[str], None] = '04e9d22ec1fe'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('customer_stages', schema=None) as batch_op:
        batch_op.create_index('ix_customer_stages_stage', ['stage', 'customer_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('customer_stages', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_stages_stage')
