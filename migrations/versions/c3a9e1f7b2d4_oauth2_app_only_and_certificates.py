"""OAuth2 profiles: app-only grant, certificate credential, the shared app token

Revision ID: c3a9e1f7b2d4
Revises: c3d9e1f2a4b5
Create Date: 2026-12-02 06:15:00

grant is "delegated" (browser consent, as before) or "app_only" (client credentials);
credential is "secret" (as before) or "certificate" (a signed client assertion made with the
encrypted private key). The app-only access token is kept encrypted on the profile so every
account and every scheduler process shares one token.
"""

import sqlalchemy as sa
from alembic import op

import webapp.crypto

# revision identifiers, used by Alembic.
revision = "c3a9e1f7b2d4"
down_revision = "c3d9e1f2a4b5"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("oauth2_profile", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grant", sa.String(length=20), nullable=False, server_default="delegated")
        )
        batch_op.add_column(
            sa.Column("credential", sa.String(length=20), nullable=False, server_default="secret")
        )
        batch_op.add_column(sa.Column("private_key", webapp.crypto.EncryptedText(), nullable=True))
        batch_op.add_column(sa.Column("certificate", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("app_access_token", webapp.crypto.EncryptedText(), nullable=True)
        )
        batch_op.add_column(sa.Column("app_token_expires_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("oauth2_profile", schema=None) as batch_op:
        for name in (
            "app_token_expires_at",
            "app_access_token",
            "certificate",
            "private_key",
            "credential",
            "grant",
        ):
            batch_op.drop_column(name)
