"""Keep what an OAuth2 consent started with in its pending row

Revision ID: b7e4c2a9d1f0
Revises: b7f3a2c1d9e8
Create Date: 2026-12-02 03:20:00

The callback used to re-read the profile: an edit between the start and the callback sent
the code (and the client secret) to the new token URL. The pending row now keeps the nonce
and the endpoints, client id and redirect URI the flow started with. Rows parked before this
migration have NULLs and are refused at the callback (they live 10 minutes).
"""

import sqlalchemy as sa
from alembic import op

import webapp.crypto

# revision identifiers, used by Alembic.
revision = "b7e4c2a9d1f0"
down_revision = "b7f3a2c1d9e8"
branch_labels = None
depends_on = None

TEXT_COLUMNS = ("redirect_uri", "authorize_url", "token_url", "jwks_url", "issuer")


def upgrade():
    with op.batch_alter_table("oauth2_pending_authorization", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nonce", webapp.crypto.EncryptedText(), nullable=True))
        batch_op.add_column(sa.Column("client_id", sa.String(length=200), nullable=True))
        for name in TEXT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("oauth2_pending_authorization", schema=None) as batch_op:
        for name in reversed(TEXT_COLUMNS):
            batch_op.drop_column(name)
        batch_op.drop_column("client_id")
        batch_op.drop_column("nonce")
