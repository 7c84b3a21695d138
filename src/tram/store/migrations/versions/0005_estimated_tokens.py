"""usage rows say when their token figures are estimated

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # True when the engine never reported the final usage (a stream the client cut, a request
    # cancelled or timed out mid-generation): the figures are what the gateway counted.
    with op.batch_alter_table("usage_events") as table:
        table.add_column(sa.Column("tokens_estimated", sa.Boolean, nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as table:
        table.drop_column("tokens_estimated")
