"""Drop three columns nothing reads or writes

Revision ID: 6d0ff374e8d2
Revises: 9c1d2e3f4a5b
Create Date: 2026-12-02 02:30:00

seen_message.message_id was never filled (the dedupe key is the server's UID or UIDL);
failed_mail.status and failed_mail.ticket_id described a "reprocessed" state that does not
exist: a failed mail that is reprocessed successfully is deleted.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "6d0ff374e8d2"
down_revision = "9c1d2e3f4a5b"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("seen_message", schema=None) as batch_op:
        batch_op.drop_column("message_id")
    with op.batch_alter_table("failed_mail", schema=None) as batch_op:
        batch_op.drop_column("ticket_id")
        batch_op.drop_column("status")


def downgrade():
    with op.batch_alter_table("failed_mail", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=20), nullable=False, server_default="failed")
        )
        batch_op.add_column(sa.Column("ticket_id", sa.Integer(), nullable=True))
        # The name PostgreSQL gave the unnamed constraint of the initial schema.
        batch_op.create_foreign_key("failed_mail_ticket_id_fkey", "ticket", ["ticket_id"], ["id"])
    with op.batch_alter_table("seen_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=500), nullable=True))
