"""usage rows record the pixels of the images sent to the engine

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as table:
        table.add_column(sa.Column("image_pixels", sa.BigInteger, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as table:
        table.drop_column("image_pixels")
