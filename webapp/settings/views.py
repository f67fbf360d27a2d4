"""The Settings screen: validate, save, flash, redirect."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from .forms import settings_form
from .service import current_settings, save_settings
from .store import SETTINGS

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.route("/", methods=["GET", "POST"])
def edit() -> Response | str:
    form = settings_form(current_settings())
    if form.validate_on_submit():
        save_settings({key: _stored(key, form[key].data) for key in SETTINGS})
        flash("Settings saved.", "success")
        return redirect(url_for("settings.edit"))
    return render_template("settings/edit.html", form=form, specs=SETTINGS)


def _stored(key: str, value: object) -> str:
    """The value as stored: a number without leading zeros or spaces, other text stripped."""
    text = str(value).strip()
    return str(int(text)) if SETTINGS[key].kind == "int" else text
