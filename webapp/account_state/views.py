"""The account-state screens: a run's fetch log, oversized mail (dismiss, fetch it anyway
once), and the JSON the Mail Accounts list and Status poll while a fetch runs."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import MailAccount, OversizedMessage
from .service import (
    account_labels,
    account_states,
    dismiss_oversized,
    fetch_oversized_once,
    get_oversized,
    get_run,
)

bp = Blueprint("account_state", __name__, url_prefix="/mail-accounts")

MAX_POLLED = 500  # account ids one poll may ask for


def _account(account_id: int) -> MailAccount:
    account = db.session.get(MailAccount, account_id)
    if account is None:
        abort(404)
    return account


def _oversized(account_id: int, oversized_id: int) -> OversizedMessage:
    row = get_oversized(account_id, oversized_id)
    if row is None:
        abort(404)
    return row


@bp.route("/state.json")
def states() -> Response:
    """The badge, last and next run of the accounts `?id=1&id=2` (signed-in admins only)."""
    ids = [int(i) for i in request.args.getlist("id") if i.isdigit()][:MAX_POLLED]
    response = jsonify({"accounts": account_states(ids)})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:account_id>/runs/<int:run_id>")
def run_log(account_id: int, run_id: int) -> str:
    """The fetch log of one run: what `mail-account fetch --debug` shows, secrets masked."""
    account = _account(account_id)
    run = get_run(account_id, run_id)
    if run is None:
        abort(404)
    return render_template(
        "account_state/run_log.html", account=account, run=run, label=account_labels()[account.id]
    )


def _back(account_id: int) -> Response:
    target = request.form.get("next")
    if target == "status":
        return redirect(url_for("status.index"))
    return redirect(url_for("mail_accounts.edit", account_id=account_id) + "#oversized")


@bp.route("/<int:account_id>/oversized/<int:oversized_id>/dismiss", methods=["POST"])
def dismiss(account_id: int, oversized_id: int) -> Response:
    row = _oversized(account_id, oversized_id)
    dismiss_oversized(row)
    flash(f"Dismissed: {row.subject or '(no subject)'} stays on the server.", "success")
    return _back(account_id)


@bp.route("/<int:account_id>/oversized/<int:oversized_id>/fetch-once", methods=["POST"])
def fetch_once(account_id: int, oversized_id: int) -> Response:
    account = _account(account_id)
    row = _oversized(account_id, oversized_id)
    fetch_oversized_once(row, account)
    flash(
        f"{row.subject or '(no subject)'} is fetched anyway at the next fetch, "
        "which was requested now.",
        "success",
    )
    return _back(account_id)
