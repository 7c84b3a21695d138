"""key limits

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as table:
        table.add_column(sa.Column("rpm", sa.Integer, nullable=True))
        table.add_column(sa.Column("tpm", sa.Integer, nullable=True))
        table.add_column(sa.Column("max_concurrency", sa.Integer, nullable=True))
        table.add_column(sa.Column("max_total_tokens", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as table:
        for column in ("rpm", "tpm", "max_concurrency", "max_total_tokens"):
            table.drop_column(column)
