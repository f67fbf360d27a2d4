"""Mail Account Management: overview, add, edit, delete, fetch now, test connection."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import status
from ..auth import current_admin_name
from ..extensions import db
from ..models import FetchRun, MailAccount
from ..validation import ValidationError
from .forms import MailAccountForm
from .service import (
    create_mail_account,
    delete_mail_account,
    list_mail_accounts,
    update_mail_account,
    validate_mail_account_input,
)
from .validators import MailAccountInput

bp = Blueprint("mail_accounts", __name__, url_prefix="/mail-accounts")

DELETE_QUESTION = "Do you really want to delete this mail account?"


def _get_account(account_id: int) -> MailAccount:
    account = db.session.get(MailAccount, account_id)
    if account is None:
        abort(404)
    return account


@bp.route("/")
def index():
    include_invalid = request.args.get("invalid") == "1"
    query = request.args.get("q", "")
    accounts = list_mail_accounts(include_invalid=include_invalid, query=query)
    total = db.session.query(MailAccount).count()
    # "Fetch now" only marks the account due; the page shows how far the scheduler got.
    fetch_states = status.fetch_states(accounts)
    return render_template(
        "mail_accounts/index.html",
        accounts=accounts,
        fetch_states=fetch_states,
        fetch_pending=any(status.is_pending(s) for s in fetch_states.values()),
        scheduler_alive=status.scheduler_alive(),
        scheduler_command=status.START_COMMAND,
        include_invalid=include_invalid,
        query=query,
        total=total,
        delete_question=DELETE_QUESTION,
    )


def _start_oauth2(data: MailAccountInput, account: MailAccount | None, finish: bool):
    """The one place that hands an OAuth2 account over to the provider sign-in."""
    try:
        from ..oauth.flow import start_authorization
    except ImportError:
        flash("OAuth2 is not available yet.", "error")
        return None
    return start_authorization(data.to_dict(), account, finish)


@bp.route("/add", methods=["GET", "POST"])
def add():
    form = MailAccountForm()
    if form.validate_on_submit():
        data = form.to_input()
        try:
            if form.is_oauth2():
                errors = validate_mail_account_input(data)
                if errors:
                    raise ValidationError(errors)
                response = _start_oauth2(data, None, finish=True)
                if response is not None:
                    return response
            else:
                account = create_mail_account(data, current_admin_name())
                flash(f"Mail account {account.username} on {account.host} added.", "success")
                return redirect(url_for("mail_accounts.index"))
        except ValidationError as e:
            form.add_errors(e.errors)
    return render_template("mail_accounts/form.html", form=form, account=None, runs=[])


@bp.route("/<int:account_id>", methods=["GET", "POST"])
def edit(account_id: int):
    account = _get_account(account_id)
    form = MailAccountForm(account=account) if request.method == "POST" else None
    if form is None:
        form = MailAccountForm.for_account(account)
    elif form.validate_on_submit():
        data = form.to_input()
        finish = bool(form.submit_finish.data)
        try:
            if form.is_oauth2():
                errors = validate_mail_account_input(data, account)
                if errors:
                    raise ValidationError(errors)
                response = _start_oauth2(data, account, finish=finish)
                if response is not None:
                    return response
            else:
                update_mail_account(account, data, current_admin_name())
                flash(f"Mail account {account.username} on {account.host} saved.", "success")
                if finish:
                    return redirect(url_for("mail_accounts.index"))
                return redirect(url_for("mail_accounts.edit", account_id=account.id))
        except ValidationError as e:
            form.add_errors(e.errors)
    runs = (
        db.session.query(FetchRun)
        .filter_by(mail_account_id=account.id)
        .order_by(FetchRun.started_at.desc(), FetchRun.id.desc())
        .limit(20)
        .all()
    )
    return render_template("mail_accounts/form.html", form=form, account=account, runs=runs)


@bp.route("/<int:account_id>/delete", methods=["GET", "POST"])
def delete(account_id: int):
    """GET: the confirmation page (works without JavaScript); POST: delete."""
    account = _get_account(account_id)
    if request.method == "GET":
        return render_template(
            "mail_accounts/delete.html", account=account, question=DELETE_QUESTION
        )
    label = f"{account.username} on {account.host}"
    delete_mail_account(account)
    flash(f"Mail account {label} deleted.", "success")
    return redirect(url_for("mail_accounts.index"))


@bp.route("/<int:account_id>/fetch", methods=["POST"])
def fetch_now(account_id: int) -> Response:
    account = _get_account(account_id)
    try:
        from ..postmaster.requests import request_fetch
    except ImportError:
        flash("Fetching is not available yet.", "warning")
    else:
        request_fetch(account)
        flash(f"Fetching {account.username} on {account.host} was requested.", "success")
    return redirect(url_for("mail_accounts.index"))


@bp.route("/<int:account_id>/test", methods=["POST"])
def test_connection(account_id: int) -> Response:
    account = _get_account(account_id)
    try:
        from ..oauth.tokens import OAuth2TokenError
        from ..postmaster.fetch import test_connection as run_test
        from ..postmaster.mailbox import MailError
    except ImportError:
        flash("Testing the connection is not available yet.", "warning")
    else:
        try:
            report = run_test(account)
        except MailError as e:  # admin-readable, without secrets
            flash(f"Connection failed: {e}", "error")
        except OAuth2TokenError as e:  # no access token (e.g. re-authorization needed)
            flash(f"Connection failed: {e.admin_message}", "error")
        else:
            folders = ", ".join(report.folders[:20]) or "-"
            flash(
                f"Connection OK: {report.message_count} messages in "
                f"{account.effective_folder}; folders: {folders}.",
                "success",
            )
    return redirect(url_for("mail_accounts.edit", account_id=account.id))
