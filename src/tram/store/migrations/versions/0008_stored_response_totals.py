"""each key's stored-response bytes, kept as a total so the per-key cap is held when a turn is
stored (a sum over the key's rows per commit grows with what the key stores)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_response_totals",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO stored_response_totals (key_id, size_bytes) "
               "SELECT key_id, SUM(size_bytes) FROM stored_responses GROUP BY key_id")


def downgrade() -> None:
    op.drop_table("stored_response_totals")
