"""Mail Account Management: overview, add, edit, delete, fetch now, test connection."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..models import MailAccount
from ..oauth.flow import browser_start
from ..status import service as status
from ..validation import ValidationError
from .forms import MailAccountForm
from .service import (
    ConnectionFailed,
    check_connection,
    count_mail_accounts,
    create_mail_account,
    delete_mail_account,
    get_mail_account,
    host_warning,
    list_mail_accounts,
    push_line,
    recent_fetch_runs,
    request_fetch_now,
    save_oauth2_account,
    update_mail_account,
)
from .validators import MailAccountInput

bp = Blueprint("mail_accounts", __name__, url_prefix="/mail-accounts")

DELETE_QUESTION = "Do you really want to delete this mail account?"


def _get_account(account_id: int) -> MailAccount:
    account = get_mail_account(account_id)
    if account is None:
        abort(404)
    return account


@bp.route("/")
def index() -> str:
    include_invalid = request.args.get("invalid") == "1"
    query = request.args.get("q", "")
    accounts = list_mail_accounts(include_invalid=include_invalid, query=query)
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
        total=count_mail_accounts(),
        delete_question=DELETE_QUESTION,
    )


@bp.route("/add", methods=["GET", "POST"])
def add() -> Response | str:
    form = MailAccountForm()
    if form.validate_on_submit():
        data = form.to_input()
        try:
            if form.is_oauth2():
                # A new OAuth2 account is saved by the callback, after the sign-in.
                url = save_oauth2_account(data, None, True, browser_start, current_admin_name())
                assert url is not None  # a new account always needs the sign-in
                _flash_host_warning(None, data)
                return redirect(url)
            account = create_mail_account(data, current_admin_name())
            flash(f"Mail account {account.username} on {account.host} added.", "success")
            return redirect(url_for("mail_accounts.index"))
        except ValidationError as e:
            form.add_errors(e.errors)
    return render_template("mail_accounts/form.html", form=form, account=None, runs=[])


@bp.route("/<int:account_id>", methods=["GET", "POST"])
def edit(account_id: int) -> Response | str:
    account = _get_account(account_id)
    form = MailAccountForm(account=account) if request.method == "POST" else None
    if form is None:
        form = MailAccountForm.for_account(account)
    elif form.validate_on_submit():
        data = form.to_input()
        finish = bool(form.submit_finish.data)
        try:
            if form.is_oauth2():
                url = save_oauth2_account(
                    data, account, finish, browser_start, current_admin_name()
                )
                _flash_host_warning(account, data)
                if url is not None:
                    return redirect(url)
            else:
                update_mail_account(account, data, current_admin_name())
            flash(f"Mail account {account.username} on {account.host} saved.", "success")
            if finish:
                return redirect(url_for("mail_accounts.index"))
            return redirect(url_for("mail_accounts.edit", account_id=account.id))
        except ValidationError as e:
            form.add_errors(e.errors)
    runs = recent_fetch_runs(account)
    return render_template(
        "mail_accounts/form.html",
        form=form,
        account=account,
        runs=runs,
        push_line=push_line(account),
    )


def _flash_host_warning(account: MailAccount | None, data: MailAccountInput) -> None:
    warning = host_warning(account, data)
    if warning:
        flash(f"Warning: {warning}", "warning")


@bp.route("/<int:account_id>/delete", methods=["GET", "POST"])
def delete(account_id: int) -> Response | str:
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
    request_fetch_now(account)
    flash(f"Fetching {account.username} on {account.host} was requested.", "success")
    return redirect(url_for("mail_accounts.index"))


@bp.route("/<int:account_id>/test", methods=["POST"])
def test_connection(account_id: int) -> Response:
    account = _get_account(account_id)
    try:
        report = check_connection(account)
    except ConnectionFailed as e:
        flash(f"Connection failed: {e}", "error")
    else:
        folders = ", ".join(report.folders[:20]) or "-"
        flash(
            f"Connection OK: {report.message_count} messages in "
            f"{account.effective_folder}; folders: {folders}.",
            "success",
        )
    return redirect(url_for("mail_accounts.edit", account_id=account.id))
