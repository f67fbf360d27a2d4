"""Sign-in throttling per client address, and a session version per admin

Revision ID: b7e4c2a91f30
Revises: b7e4c2a9d1f0
Create Date: 2026-12-02 03:20:00

admin_user.failed_logins/locked_until locked an account (anyone could lock the admin out);
sign_in_attempt counts failures per client address instead. admin_user.session_version is
bumped at sign-out and password change, which ends every session signed in before.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b7e4c2a91f30"
down_revision = "b7e4c2a9d1f0"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sign_in_attempt",
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("address"),
    )
    with op.batch_alter_table("admin_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")


def downgrade():
    with op.batch_alter_table("admin_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(), nullable=True))
        batch_op.drop_column("session_version")
    op.drop_table("sign_in_attempt")
