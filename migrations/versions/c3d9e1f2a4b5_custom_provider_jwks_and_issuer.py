"""A Custom OAuth2 provider's optional JWKS URL and issuer

Revision ID: c3d9e1f2a4b5
Revises: b7e4c2a91f30
Create Date: 2026-12-02 06:10:00

With them, the id_token of a Custom provider's sign-in has its signature and issuer checked.
Both are NULL for existing profiles (Microsoft presets and Google need neither).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c3d9e1f2a4b5"
down_revision = "b7e4c2a91f30"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth2_profile", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jwks_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("issuer", sa.String(length=500), nullable=True))


def downgrade():
    with op.batch_alter_table("oauth2_profile", schema=None) as batch_op:
        batch_op.drop_column("issuer")
        batch_op.drop_column("jwks_url")
