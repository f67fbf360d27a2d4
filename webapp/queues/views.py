"""The Queues screens: list, add, edit."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..extensions import db
from ..models import Queue
from ..validation import ValidationError
from .forms import QueueForm
from .service import all_queues, save_queue

bp = Blueprint("queues", __name__, url_prefix="/queues")


@bp.route("/")
def index() -> str:
    return render_template("queues/index.html", queues=all_queues())


@bp.route("/add", methods=["GET", "POST"])
@bp.route("/<int:queue_id>", methods=["GET", "POST"])
def edit(queue_id: int | None = None) -> Response | str:
    queue = db.session.get(Queue, queue_id) if queue_id is not None else None
    if queue_id is not None and queue is None:
        abort(404)
    form = QueueForm(obj=queue)
    if form.validate_on_submit():
        try:
            saved = save_queue(
                queue, form.name.data, form.validity.data, form.comment.data, current_admin_name()
            )
        except ValidationError as e:
            for key, message in e.errors.items():
                form[key].errors = [*form[key].errors, message]
        else:
            flash(f"Queue {saved.name} saved.", "success")
            return redirect(url_for("queues.index"))
    return render_template("queues/form.html", form=form, queue=queue)
