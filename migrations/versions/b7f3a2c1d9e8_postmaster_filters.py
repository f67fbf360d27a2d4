"""PostMaster filters

Revision ID: b7f3a2c1d9e8
Revises: 6d0ff374e8d2
Create Date: 2026-12-02 02:40:00

Filters match incoming mail by its headers and set X-OTOBO-* values (issue 13); their
conditions and actions are small JSON lists kept with the filter.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b7f3a2c1d9e8"
down_revision = "6d0ff374e8d2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "postmaster_filter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("stop_after_match", sa.Boolean(), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("validity", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade():
    op.drop_table("postmaster_filter")
