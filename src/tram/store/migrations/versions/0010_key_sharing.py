"""a key's priority (class name or number) and weight in the fair queue

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("priority", sa.String(16)))
        batch.add_column(sa.Column("weight", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("weight")
        batch.drop_column("priority")
