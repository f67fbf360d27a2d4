"""The Failed mail screen: list, download the source, reprocess, delete."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..downloads import download_response
from ..extensions import db
from ..models import FailedMail
from ..paging import page_number
from ..postmaster.pipeline import MessageOutcome
from .service import delete as delete_failed
from .service import failed_mail_item, failed_mail_page
from .service import reprocess as reprocess_failed

bp = Blueprint("failed_mail", __name__, url_prefix="/failed-mail")


def outcome_message(outcome: MessageOutcome) -> tuple[str, str]:
    """Flash text and category for a reprocessed mail."""
    if outcome.kind == "failed":
        return f"Failed again: {outcome.error}", "error"
    if outcome.kind == "ignored":
        return "The mail was ignored (X-OTOBO-Ignore) and removed.", "warning"
    what = "New ticket" if outcome.kind == "new_ticket" else "Follow-up to ticket"
    return f"{what} created.", "success"


@bp.route("/")
def index() -> str:
    page = page_number()
    items, has_next = failed_mail_page(page)
    return render_template("tickets/failed_mail.html", items=items, page=page, has_next=has_next)


@bp.route("/<int:failed_id>/raw")
def raw(failed_id: int) -> Response:
    failed = db.get_or_404(FailedMail, failed_id)
    return download_response(failed.raw_mail.content, f"failed-mail-{failed.id}.eml")


@bp.route("/<int:failed_id>/reprocess", methods=["POST"])
def reprocess(failed_id: int) -> Response:
    outcome = reprocess_failed(db.get_or_404(FailedMail, failed_id))
    message, category = outcome_message(outcome)
    flash(message, category)
    if outcome.ticket_id is not None:
        return redirect(url_for("tickets.show", ticket_id=outcome.ticket_id))
    return redirect(url_for("failed_mail.index"))


@bp.route("/<int:failed_id>/delete", methods=["GET", "POST"])
def delete(failed_id: int) -> Response | str:
    """GET: the confirmation page; POST: delete the mail for good."""
    failed = db.get_or_404(FailedMail, failed_id)
    if request.method == "GET":
        return render_template("tickets/failed_mail_delete.html", item=failed_mail_item(failed))
    delete_failed(failed)
    flash("Failed mail deleted.", "success")
    return redirect(url_for("failed_mail.index"))
