"""Drop the unused index on raw_mail.sha256

Revision ID: 9c1d2e3f4a5b
Revises: 4a48534b35a7
Create Date: 2026-11-26 01:05:00

No query looks raw mail up by its hash (the dedupe keys have their own sha256 index), and
a random-keyed index costs a page write per message at every fetch batch commit.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "9c1d2e3f4a5b"
down_revision = "4a48534b35a7"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("raw_mail", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raw_mail_sha256"))


def downgrade():
    with op.batch_alter_table("raw_mail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_mail_sha256"), ["sha256"], unique=False)
