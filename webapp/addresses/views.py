"""The Email Addresses screens: list, add, edit."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..extensions import db
from ..models import Queue, SystemAddress
from ..validation import ValidationError
from .forms import AddressForm
from .service import all_addresses, save_address

bp = Blueprint("addresses", __name__, url_prefix="/email-addresses")


@bp.route("/")
def index() -> str:
    return render_template("addresses/index.html", addresses=all_addresses())


@bp.route("/add", methods=["GET", "POST"])
@bp.route("/<int:address_id>", methods=["GET", "POST"])
def edit(address_id: int | None = None) -> Response | str:
    row = db.session.get(SystemAddress, address_id) if address_id is not None else None
    if address_id is not None and row is None:
        abort(404)
    form = AddressForm(obj=row)
    form.queue_id.choices = {
        "": "-",
        **{
            str(q.id): q.name
            for q in db.session.query(Queue).order_by(Queue.name)
            if q.validity == "valid" or (row is not None and row.queue_id == q.id)
        },
    }
    if row is not None and not form.is_submitted():
        form.queue_id.data = str(row.queue_id)
    if form.validate_on_submit():
        try:
            saved = save_address(
                row,
                form.address.data,
                form.queue_id.data,
                form.validity.data,
                form.display_name.data,
                form.comment.data,
                current_admin_name(),
            )
        except ValidationError as e:
            for key, message in e.errors.items():
                form[key].errors = [*form[key].errors, message]
        else:
            flash(f"Email address {saved.address} saved.", "success")
            return redirect(url_for("addresses.index"))
    return render_template("addresses/form.html", form=form, row=row)
