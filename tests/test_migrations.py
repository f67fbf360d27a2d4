"""The Alembic migrations alone build the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from flask_migrate import upgrade

from webapp import create_app
from webapp.extensions import db


def test_migrations_match_models(tmp_path, database_url):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        }
    )
    app.instance_path = str(tmp_path / "instance")
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            differences = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert differences == [], (
        "The models changed after the migration was generated: regenerate it "
        f"(flask --app wsgi db migrate). Differences: {differences}"
    )
