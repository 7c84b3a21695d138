"""usage events

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("served_model", sa.String(300), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("cached_tokens", sa.Integer, nullable=True),
        sa.Column("images", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stream", sa.Boolean, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("first_byte_ms", sa.Float, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("client_disconnected", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_usage_events_ts", "usage_events", ["ts"])
    op.create_index("ix_usage_key_ts", "usage_events", ["key_id", "ts"])
    op.create_index("ix_usage_model_ts", "usage_events", ["model", "ts"])


def downgrade() -> None:
    op.drop_table("usage_events")
