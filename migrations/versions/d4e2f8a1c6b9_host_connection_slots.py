"""Connection slots per mail host, shared by every scheduler and CLI process

Revision ID: d4e2f8a1c6b9
Revises: c3d9e1f2a7b4
Create Date: 2026-12-02 17:00:00

MAX_CONNECTIONS_PER_HOST was counted per process, so N scheduler processes could open N times
the limit to one host (Microsoft 365 throttles that). A row per (host, slot) names the fetch
lease that holds it; webapp/postmaster/hosts.py claims them with conditional UPDATEs.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d4e2f8a1c6b9"
down_revision = "c3d9e1f2a7b4"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "host_connection_slot",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_generation", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("host", "slot"),
    )


def downgrade():
    op.drop_table("host_connection_slot")
