"""Oversized mail the admin can see: its date, dismissing it, fetching it once

Revision ID: c3d8e1f2a4b6
Revises: c3a9e1f7b2d4
Create Date: 2026-12-02 06:10:00

oversized_message.sent_at is the message's Date header (read with the headers only);
dismissed_at hides it from "needs attention"; fetch_once takes it at the next fetch whatever
the size limit says.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3d8e1f2a4b6"
down_revision = "c3a9e1f7b2d4"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oversized_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("dismissed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("fetch_once", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("oversized_message", schema=None) as batch_op:
        batch_op.drop_column("fetch_once")
        batch_op.drop_column("dismissed_at")
        batch_op.drop_column("sent_at")
