"""Failed mail: messages the pipeline could not process, kept and shown until reprocessed
or deleted by an admin."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from flask import Blueprint, flash, redirect, render_template, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import FailedMail, RawMail
from ..postmaster.parse import decode_header_value
from ..postmaster.pipeline import MessageOutcome, delete_failed_mail, reprocess_failed_mail
from .downloads import download_response
from .views import page_number

bp = Blueprint("failed_mail", __name__, url_prefix="/failed-mail")

PAGE_SIZE = 50
# Enough for From and Subject; never load a whole (maybe 30 MB) message for a list row.
HEADER_PEEK_BYTES = 16 * 1024


def peek_headers(head: bytes | None) -> dict[str, str]:
    """From and Subject of a raw message start, decoded; empty when unreadable."""
    if not head:
        return {}
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(bytes(head))
        return {
            "from": decode_header_value(msg.get("from")),
            "subject": decode_header_value(msg.get("subject")),
        }
    except Exception:  # the reason it failed may well be these headers
        return {}


def failed_mail_page(page: int) -> tuple[list[dict], bool]:
    """One page of failed mail, newest first, with From/Subject; and whether more follow."""
    head = func.substr(RawMail.content, 1, HEADER_PEEK_BYTES)
    rows = db.session.execute(
        select(FailedMail, head)
        .join(RawMail, RawMail.id == FailedMail.raw_mail_id)
        .options(selectinload(FailedMail.mail_account))
        .order_by(FailedMail.created_at.desc(), FailedMail.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    items = [{"failed": failed, **peek_headers(raw_head)} for failed, raw_head in rows]
    return items[:PAGE_SIZE], len(items) > PAGE_SIZE


def outcome_message(outcome: MessageOutcome) -> tuple[str, str]:
    """Flash text and category for a reprocessed mail."""
    if outcome.kind == "failed":
        return f"Failed again: {outcome.error}", "error"
    if outcome.kind == "ignored":
        return "The mail was ignored (X-OTOBO-Ignore) and removed.", "warning"
    what = "New ticket" if outcome.kind == "new_ticket" else "Follow-up to ticket"
    return f"{what} created.", "success"


@bp.route("/")
def index():
    page = page_number()
    items, has_next = failed_mail_page(page)
    return render_template("tickets/failed_mail.html", items=items, page=page, has_next=has_next)


@bp.route("/<int:failed_id>/raw")
def raw(failed_id: int):
    failed = db.get_or_404(FailedMail, failed_id)
    return download_response(failed.raw_mail.content, f"failed-mail-{failed.id}.eml")


@bp.route("/<int:failed_id>/reprocess", methods=["POST"])
def reprocess(failed_id: int):
    failed = db.get_or_404(FailedMail, failed_id)
    outcome = reprocess_failed_mail(failed)
    db.session.commit()
    message, category = outcome_message(outcome)
    flash(message, category)
    if outcome.ticket_id is not None:
        return redirect(url_for("tickets.show", ticket_id=outcome.ticket_id))
    return redirect(url_for("failed_mail.index"))


@bp.route("/<int:failed_id>/delete", methods=["POST"])
def delete(failed_id: int):
    delete_failed_mail(db.get_or_404(FailedMail, failed_id))
    db.session.commit()
    flash("Failed mail deleted.", "success")
    return redirect(url_for("failed_mail.index"))
