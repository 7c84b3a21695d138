"""period budgets, admin-scoped keys, idempotent usage events

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as table:
        table.add_column(sa.Column("budget_tokens", sa.BigInteger, nullable=True))
        table.add_column(sa.Column("budget_period", sa.String(8), nullable=True))
        table.add_column(sa.Column("is_admin", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    # A usage event carries its own id, so replaying a journal or a spill file twice (a crash
    # between the database commit and the file's removal) never counts a request twice.
    with op.batch_alter_table("usage_events") as table:
        table.add_column(sa.Column("event_id", sa.String(32), nullable=True))
    op.create_index("ux_usage_event_id", "usage_events", ["event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_usage_event_id", "usage_events")
    with op.batch_alter_table("usage_events") as table:
        table.drop_column("event_id")
    with op.batch_alter_table("virtual_keys") as table:
        for column in ("budget_tokens", "budget_period", "is_admin"):
            table.drop_column(column)
