"""Settings operations shared by the screen and the CLI."""

from __future__ import annotations

from ..extensions import db
from .store import SETTINGS, get_setting, set_setting


def current_settings() -> dict[str, str]:
    """Every setting's stored value or default, by key."""
    return {key: get_setting(key) for key in SETTINGS}


def save_settings(values: dict[str, str]) -> None:
    """Store the given (already validated) values and commit."""
    for key, value in values.items():
        set_setting(key, value.strip())
    db.session.commit()
