"""the gateway's own database (tables come in the revisions after this one)

Revision ID: 5f0c1a2b3d4e
Revises: 
Create Date: 2026-12-05 04:40:00

"""
from typing import Sequence, Union

# revision identifiers, used by Alembic.
revision: str = '5f0c1a2b3d4e'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
