"""Queues: screen (list, add, edit), service and CLI. Queues are never hard-deleted: mail
accounts, email addresses and tickets refer to them, so they are set invalid instead."""

from __future__ import annotations

import json

import click
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.cli import AppGroup
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField

from .account_types import VALIDITIES
from .auth import current_admin_name
from .extensions import db
from .models import Queue

bp = Blueprint("queues", __name__, url_prefix="/queues")
queue_cli = AppGroup("queue", help="Queues.")


class QueueValidationError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def validate_queue(
    name: str, validity: str, comment: str | None, queue: Queue | None = None
) -> dict[str, str]:
    """{field: message} for bad queue input."""
    from .settings.store import get_setting

    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Enter the queue name."
    elif len(name) > 200 or any(ord(c) < 32 for c in name):
        errors["name"] = "The name is too long or contains control characters."
    else:
        other = db.session.query(Queue).filter(db.func.lower(Queue.name) == name.lower())
        if queue is not None:
            other = other.filter(Queue.id != queue.id)
        if other.first() is not None:
            errors["name"] = "A queue with this name already exists."
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    elif (
        queue is not None
        and validity != "valid"
        and queue.name == get_setting("PostmasterDefaultQueue")
    ):
        errors["validity"] = "This is the default queue (Settings); it must stay valid."
    if comment and len(comment) > 2000:
        errors["comment"] = "The comment is too long (at most 2000 characters)."
    return errors


def save_queue(
    queue: Queue | None, name: str, validity: str, comment: str | None, actor: str | None
) -> Queue:
    """Add (queue None) or change a queue; raises QueueValidationError."""
    errors = validate_queue(name, validity, comment, queue)
    if errors:
        raise QueueValidationError(errors)
    if queue is None:
        queue = Queue(created_by=actor)
        db.session.add(queue)
    elif queue.name != name.strip():
        from .settings.store import SETTINGS, get_setting, set_setting

        if get_setting("PostmasterDefaultQueue") == queue.name:
            set_setting(SETTINGS["PostmasterDefaultQueue"].key, name.strip())
    queue.name = name.strip()
    queue.validity = validity
    queue.comment = (comment or "").strip() or None
    queue.changed_by = actor
    db.session.commit()
    return queue


class QueueForm(FlaskForm):
    name = StringField("Name *")
    validity = SelectField(
        "Validity *", choices=[(v, v) for v in VALIDITIES], default="valid", validate_choice=False
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    submit = SubmitField("Save")


@bp.route("/")
def index():
    queues = db.session.query(Queue).order_by(Queue.name).all()
    return render_template("queues/index.html", queues=queues)


@bp.route("/add", methods=["GET", "POST"])
@bp.route("/<int:queue_id>", methods=["GET", "POST"])
def edit(queue_id: int | None = None):
    queue = db.session.get(Queue, queue_id) if queue_id is not None else None
    if queue_id is not None and queue is None:
        abort(404)
    form = QueueForm(obj=queue)
    if form.validate_on_submit():
        try:
            saved = save_queue(
                queue, form.name.data, form.validity.data, form.comment.data, current_admin_name()
            )
        except QueueValidationError as e:
            for key, message in e.errors.items():
                form[key].errors = [*form[key].errors, message]
        else:
            flash(f"Queue {saved.name} saved.", "success")
            return redirect(url_for("queues.index"))
    return render_template("queues/form.html", form=form, queue=queue)


@queue_cli.command("add")
@click.argument("name")
@click.option("--comment")
@click.option("--validity", default="valid", show_default=True)
def queue_add(name: str, comment: str | None, validity: str) -> None:
    """Add a queue; prints its id."""
    from .cli_common import fail

    try:
        queue = save_queue(None, name, validity, comment, "cli")
    except QueueValidationError as e:
        fail("; ".join(e.errors.values()))
        return
    click.echo(queue.id)


@queue_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def queue_list(as_json: bool) -> None:
    """List queues."""
    queues = db.session.query(Queue).order_by(Queue.name).all()
    if as_json:
        rows = [
            {"id": q.id, "name": q.name, "validity": q.validity, "comment": q.comment}
            for q in queues
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for q in queues:
        click.echo(f"{q.id}\t{q.name}\t{q.validity}\t{q.comment or ''}")
