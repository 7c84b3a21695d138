"""usage rows name their route; stored responses (/v1/responses with store)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as table:
        table.add_column(sa.Column("route", sa.String(32), nullable=False,
                                   server_default="chat"))
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("previous_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("input_items", sa.Text, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
    )
    op.create_index("ix_stored_responses_key_created", "stored_responses",
                    ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_stored_responses_key_created", "stored_responses")
    op.drop_table("stored_responses")
    with op.batch_alter_table("usage_events") as table:
        table.drop_column("route")
