"""Email Addresses: an address linked to a queue, what dispatching by To: field looks up.
Screen (list, add, edit), service and CLI; set invalid instead of deleting."""

from __future__ import annotations

import json
import re

import click
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.cli import AppGroup
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField

from .account_types import VALIDITIES
from .auth import current_admin_name
from .extensions import db
from .models import Queue, SystemAddress

bp = Blueprint("addresses", __name__, url_prefix="/email-addresses")
system_address_cli = AppGroup("system-address", help="Email addresses linked to queues.")

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_RE = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")


class AddressValidationError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def normalize_address(address: str) -> str:
    return (address or "").strip().lower()


def validate_address(
    address: str,
    queue_id: int | str | None,
    validity: str,
    display_name: str | None = None,
    existing: SystemAddress | None = None,
) -> dict[str, str]:
    """{field: message} for bad email address input."""
    errors: dict[str, str] = {}
    address = normalize_address(address)
    if not address:
        errors["address"] = "Enter the email address."
    elif len(address) > 320 or not ADDRESS_RE.match(address):
        errors["address"] = "Enter a valid email address like support@example.com."
    else:
        other = db.session.query(SystemAddress).filter_by(address=address)
        if existing is not None:
            other = other.filter(SystemAddress.id != existing.id)
        if other.first() is not None:
            errors["address"] = "This email address already exists."
    queue = _queue(queue_id)
    if queue is None:
        errors["queue_id"] = "Choose the queue for this address."
    elif queue.validity != "valid" and (existing is None or existing.queue_id != queue.id):
        errors["queue_id"] = "This queue is not valid."
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    if display_name and (len(display_name) > 200 or any(ord(c) < 32 for c in display_name)):
        errors["display_name"] = "The name is too long or contains control characters."
    return errors


def _queue(queue_id: int | str | None) -> Queue | None:
    try:
        return db.session.get(Queue, int(queue_id)) if queue_id not in (None, "") else None
    except (TypeError, ValueError):
        return None


def save_address(
    existing: SystemAddress | None,
    address: str,
    queue_id: int | str | None,
    validity: str,
    display_name: str | None,
    comment: str | None,
    actor: str | None,
) -> SystemAddress:
    """Add (existing None) or change an address; raises AddressValidationError."""
    errors = validate_address(address, queue_id, validity, display_name, existing)
    if errors:
        raise AddressValidationError(errors)
    row = existing
    if row is None:
        row = SystemAddress(created_by=actor)
        db.session.add(row)
    row.address = normalize_address(address)
    row.queue_id = int(queue_id)
    row.validity = validity
    row.display_name = (display_name or "").strip() or None
    row.comment = (comment or "").strip() or None
    row.changed_by = actor
    db.session.commit()
    return row


class AddressForm(FlaskForm):
    address = StringField("Email address *", render_kw={"type": "email"})
    display_name = StringField("Display name")
    queue_id = SelectField("Queue *", choices=[], validate_choice=False)
    validity = SelectField(
        "Validity *", choices=[(v, v) for v in VALIDITIES], default="valid", validate_choice=False
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    submit = SubmitField("Save")


@bp.route("/")
def index():
    rows = db.session.query(SystemAddress).order_by(SystemAddress.address).all()
    return render_template("addresses/index.html", addresses=rows)


@bp.route("/add", methods=["GET", "POST"])
@bp.route("/<int:address_id>", methods=["GET", "POST"])
def edit(address_id: int | None = None):
    row = db.session.get(SystemAddress, address_id) if address_id is not None else None
    if address_id is not None and row is None:
        abort(404)
    form = AddressForm(obj=row)
    form.queue_id.choices = [("", "-")] + [
        (str(q.id), q.name)
        for q in db.session.query(Queue).order_by(Queue.name)
        if q.validity == "valid" or (row is not None and row.queue_id == q.id)
    ]
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
        except AddressValidationError as e:
            for key, message in e.errors.items():
                form[key].errors = [*form[key].errors, message]
        else:
            flash(f"Email address {saved.address} saved.", "success")
            return redirect(url_for("addresses.index"))
    return render_template("addresses/form.html", form=form, row=row)


@system_address_cli.command("add")
@click.argument("address")
@click.option("--queue", "queue_name", required=True, help="Queue name.")
@click.option("--name", "display_name", help="Display name.")
@click.option("--comment")
@click.option("--validity", default="valid", show_default=True)
def address_add(
    address: str, queue_name: str, display_name: str | None, comment: str | None, validity: str
) -> None:
    """Link an email address to a queue; prints its id."""
    from .cli_common import fail

    queue = db.session.query(Queue).filter_by(name=queue_name.strip()).first()
    if queue is None:
        fail("--queue: there is no such queue.")
    try:
        row = save_address(None, address, queue.id, validity, display_name, comment, "cli")
    except AddressValidationError as e:
        fail("; ".join(e.errors.values()))
        return
    click.echo(row.id)


@system_address_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def address_list(as_json: bool) -> None:
    """List email addresses with their queues."""
    rows = db.session.query(SystemAddress).order_by(SystemAddress.address).all()
    if as_json:
        data = [
            {
                "id": r.id,
                "address": r.address,
                "display_name": r.display_name,
                "queue": r.queue.name,
                "validity": r.validity,
                "comment": r.comment,
            }
            for r in rows
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for r in rows:
        click.echo(f"{r.id}\t{r.address}\t{r.queue.name}\t{r.validity}\t{r.display_name or ''}")
