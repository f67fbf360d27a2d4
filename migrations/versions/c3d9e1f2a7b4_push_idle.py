"""Push (IMAP IDLE): the account option and the push connection's lease and state

Revision ID: c3d9e1f2a7b4
Revises: c3d8e1f2a4b6
Create Date: 2026-12-02 06:10:00

mail_account.push is "Fetch on arrival (IMAP IDLE)", on by default. push_owner,
push_expires_at and push_generation are the lease of the IDLE connection (separate from the
fetch lease: a connection idles for hours while fetches come and go); push_state, push_since
and push_detail say on the account page whether it is connected, and why not.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3d9e1f2a7b4"
down_revision = "c3d8e1f2a4b6"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("push", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("push_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("push_expires_at", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("push_generation", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("push_state", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("push_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("push_detail", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("mail_account", schema=None) as batch_op:
        for name in (
            "push_detail",
            "push_since",
            "push_state",
            "push_generation",
            "push_expires_at",
            "push_owner",
            "push",
        ):
            batch_op.drop_column(name)
