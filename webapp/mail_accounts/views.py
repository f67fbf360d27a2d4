"""Mail Account Management: overview, add, edit, delete, fetch now, test connection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..account_state.service import account_badges, account_panel, counts_text
from ..account_types import ACCOUNT_TYPES
from ..auth import current_admin_name
from ..models import MailAccount
from ..oauth.flow import browser_start
from ..status import service as status
from ..validation import ValidationError
from .forms import MailAccountForm
from .service import (
    ConnectionFailed,
    check_connection,
    check_unsaved_connection,
    connection_ok_requests_fetch,
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
    hide_invalid = request.args.get("hide_invalid") == "1"
    query = request.args.get("q", "")
    accounts = list_mail_accounts(include_invalid=not hide_invalid, query=query)
    # "Fetch now" only marks the account due; the badge shows how far the scheduler got and
    # static/account_state.js keeps it current while a fetch is queued or running.
    return render_template(
        "mail_accounts/index.html",
        accounts=accounts,
        badges=account_badges(accounts),
        scheduler_alive=status.scheduler_alive(),
        scheduler_command=status.START_COMMAND,
        hide_invalid=hide_invalid,
        query=query,
        total=count_mail_accounts(),
    )


@dataclass
class TryResult:
    """What Test connection / List folders on unsaved values found (never a secret)."""

    ok: bool
    message: str
    folders: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _try_connection(form: MailAccountForm, account: MailAccount | None) -> TryResult:
    """Test the values typed in `form` (validated, CSRF checked); nothing is saved."""
    try:
        report = check_unsaved_connection(form.to_input(), account)
    except ValidationError as e:
        form.add_errors(e.errors)
        return TryResult(False, "Correct the marked fields to test the connection.", [], e.errors)
    except ConnectionFailed as e:
        return TryResult(False, f"Connection failed: {e}")
    account_type = ACCOUNT_TYPES.get(form.type.data or "")
    typed = (form.folder.data or "").strip() if account_type and account_type.is_imap else ""
    message = f"Connection OK: {report.message_count} messages in {typed or 'INBOX'}"
    message += f"; {len(report.folders)} folders: pick one in IMAP Folder or Move to folder."
    return TryResult(True, message, report.folders)


def _render_form(
    form: MailAccountForm, account: MailAccount | None, tried: TryResult | None = None
) -> str:
    if request.method == "POST":
        form.ask_password_again()
    runs = recent_fetch_runs(account) if account is not None else []
    panel = account_panel(account) if account is not None else None
    push = push_line(account) if account is not None else None
    return render_template(
        "mail_accounts/form.html",
        form=form,
        account=account,
        runs=runs,
        tried=tried,
        panel=panel,
        counts_text=counts_text,
        push_line=push,
    )


@bp.route("/try", methods=["POST"])
@bp.route("/<int:account_id>/try", methods=["POST"])
def try_connection(account_id: int | None = None) -> Response:
    """Test connection / List folders from the form's script: the same test, as JSON."""
    account = _get_account(account_id) if account_id is not None else None
    form = MailAccountForm(account=account)
    if not form.validate():  # the CSRF token
        errors = {name: " ".join(map(str, found)) for name, found in form.errors.items()}
        result = TryResult(False, "The form expired: reload the page.", [], errors)
        return jsonify(asdict(result))
    return jsonify(asdict(_try_connection(form, account)))


@bp.route("/add", methods=["GET", "POST"])
def add() -> Response | str:
    form = MailAccountForm()
    if form.validate_on_submit():
        if form.wants_test():
            return _render_form(form, None, _try_connection(form, None))
        data = form.to_input()
        try:
            if form.is_oauth2():
                # A new OAuth2 account is saved by the callback, after the sign-in.
                url = save_oauth2_account(data, None, True, browser_start, current_admin_name())
                _flash_host_warning(None, data)
                if url is not None:
                    return redirect(url)
                # App-only: the login was checked with the app's token and the account saved.
                flash(f"Mail account {data.username} added (app-only access checked).", "success")
                return redirect(url_for("mail_accounts.index"))
            account = create_mail_account(data, current_admin_name())
            flash(f"Mail account {account.username} on {account.host} added.", "success")
            return redirect(url_for("mail_accounts.index"))
        except ValidationError as e:
            form.add_errors(e.errors)
    return _render_form(form, None)


@bp.route("/<int:account_id>", methods=["GET", "POST"])
def edit(account_id: int) -> Response | str:
    account = _get_account(account_id)
    form = MailAccountForm(account=account) if request.method == "POST" else None
    if form is None:
        form = MailAccountForm.for_account(account)
    elif form.validate_on_submit():
        if form.wants_test():
            return _render_form(form, account, _try_connection(form, account))
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
            requested = " The next fetch was requested now." if account.fetch_requested_at else ""
            flash(f"Mail account {account.username} on {account.host} saved.{requested}", "success")
            if finish:
                return redirect(url_for("mail_accounts.index"))
            return redirect(url_for("mail_accounts.edit", account_id=account.id))
        except ValidationError as e:
            form.add_errors(e.errors)
    return _render_form(form, account)


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
        requested = connection_ok_requests_fetch(account)
        next_fetch = (
            " The next fetch was requested now."
            if requested
            else " The account is not valid, so it is not fetched."
        )
        flash(
            f"Connection OK: {report.message_count} messages in "
            f"{account.effective_folder}; folders: {folders}.{next_fetch}",
            "success",
        )
    return redirect(url_for("mail_accounts.edit", account_id=account.id))
