"""What the admin sees after a fetch (service level, real Dovecot): oversized mail listed until
it is gone, dismissed or fetched once; the fetch log of each run; accounts named as the admin
names them; errors that clear once fixed; the JSON the screens poll."""

from __future__ import annotations

import pytest

from tests.fetching import add_account, ticket_count
from tests.mailgen import make_mail
from webapp.account_state.service import (
    account_badges,
    account_label,
    account_labels,
    dismiss_oversized,
    fetch_oversized_once,
    oversized_messages,
)
from webapp.extensions import db
from webapp.mail_accounts.service import update_mail_account
from webapp.mail_accounts.validators import input_from_account
from webapp.models import FetchRun, MailAccount, OversizedMessage
from webapp.postmaster.fetch import FetchOptions, fetch_account
from webapp.postmaster.mailbox import open_mailbox
from webapp.postmaster.runs import LOG_HEAD_LINES, LOG_TAIL_LINES, FetchResult
from webapp.settings.store import set_setting
from webapp.states import FetchStatus
from webapp.status.service import status_report

MAIL_DATE = "2023-11-14 22:13 UTC"  # mailgen's Date header, as every screen writes times


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


def big_mail(subject: str, size: int = 1_500_000) -> bytes:
    return make_mail(
        subject=subject,
        frm="Scanner <scanner@example.test>",
        attachments=[("scan.pdf", "application/pdf", b"x" * size)],
    )


def limit_one_megabyte() -> None:
    set_setting("MaxMessageSizeMB", "1")
    db.session.commit()


def attention(kind: str) -> list[dict]:
    return [item for item in status_report()["attention"] if item["kind"] == kind]


def remove_on_server(account_id: int, subject: str) -> None:
    """Delete one message on the server, as a mail client would."""
    from webapp.postmaster.fetch import mailbox_settings_for

    account = db.session.get(MailAccount, account_id)
    with open_mailbox(mailbox_settings_for(account)) as mailbox:
        messages = mailbox.list_messages()
        envelopes = mailbox.envelope(messages)
        mailbox.delete([m.key for m in messages if envelopes[m.key].subject == subject])


def test_oversized_mail_is_listed_on_status_until_dismissed(app_ctx, dovecot, mail_user):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    mail_user.deliver(make_mail(subject="small"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert fetch_account(account_id).status == FetchStatus.OK

    [item] = attention("oversized")
    assert item["subject"] == account_label(db.session.get(MailAccount, account_id))
    assert "from Scanner <scanner@example.test>" in item["message"]
    assert "'Huge scan'" in item["message"] and MAIL_DATE in item["message"]
    assert item["message"].startswith("2.0 MB message left on the server")  # base64 grows it
    assert status_report()["ok"] is False
    account = db.session.get(MailAccount, account_id)
    badge = account_badges([account])[account_id]
    assert badge.kind == "warning" and "1 message over the size limit" in badge.text

    # Another run changes nothing: the message is still there and still listed once.
    fetch_account(account_id)
    assert len(attention("oversized")) == 1
    [row] = oversized_messages(account_id)
    dismiss_oversized(row)
    assert attention("oversized") == []
    assert dovecot.message_count(mail_user.username) == 1  # dismissed, never deleted
    assert oversized_messages(account_id, include_dismissed=True) == [row]
    fetch_account(account_id)
    assert attention("oversized") == []  # a dismissed message is not reported again


@pytest.mark.parametrize("account_type", ["IMAPS", "POP3S"])
def test_oversized_mail_removed_on_the_server_leaves_the_list(
    app_ctx, dovecot, mail_user, account_type
):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    mail_user.deliver(big_mail("Second scan"))
    account_id = add_account(dovecot, mail_user, account_type)
    fetch_account(account_id)
    assert len(attention("oversized")) == 2
    remove_on_server(account_id, "Huge scan")
    fetch_account(account_id)
    [item] = attention("oversized")
    assert "Second scan" in item["message"]


def test_keep_mode_drops_oversized_mail_removed_below_the_last_fetched(app_ctx, dovecot, mail_user):
    # Keep mode lists from the highest UID it took: mail over the limit below it is asked for
    # by UID, or its row would stay after the message is gone.
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    mail_user.deliver(make_mail(subject="small"))
    account_id = add_account(dovecot, mail_user, "IMAPS", after_fetch="keep")
    assert fetch_account(account_id).new_tickets == 1
    assert len(attention("oversized")) == 1
    remove_on_server(account_id, "Huge scan")
    result = fetch_account(account_id)
    assert result.status == FetchStatus.OK and result.oversized == 0, result.message
    assert oversized_messages(account_id) == [] and attention("oversized") == []
    assert ticket_count() == 1


def test_keep_mode_takes_oversized_mail_below_the_last_fetched_once_the_limit_is_raised(
    app_ctx, dovecot, mail_user
):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    mail_user.deliver(make_mail(subject="small"))
    account_id = add_account(dovecot, mail_user, "IMAPS", after_fetch="keep")
    assert fetch_account(account_id).new_tickets == 1
    set_setting("MaxMessageSizeMB", "3")
    db.session.commit()
    result = fetch_account(account_id)
    assert result.new_tickets == 1 and result.oversized == 0, result.message
    assert ticket_count() == 2 and oversized_messages(account_id) == []
    assert fetch_account(account_id).new_tickets == 0  # and only once
    assert dovecot.message_count(mail_user.username) == 2  # keep mode leaves both


def test_oversized_mail_of_an_old_folder_leaves_the_list(app_ctx, dovecot, mail_user):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    dovecot.create_folder(mail_user.username, "Archive")
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id)
    assert len(oversized_messages(account_id)) == 1
    account = db.session.get(MailAccount, account_id)
    data = input_from_account(account)
    data.folder = "Archive"
    update_mail_account(account, data, "admin")
    fetch_account(account_id)
    assert oversized_messages(account_id) == []


def test_raising_the_limit_ends_the_listing_and_takes_the_mail(app_ctx, dovecot, mail_user):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id)
    assert len(attention("oversized")) == 1
    set_setting("MaxMessageSizeMB", "3")
    db.session.commit()
    assert attention("oversized") == []  # at once: the message is under the limit now
    assert fetch_account(account_id).new_tickets == 1
    assert db.session.query(OversizedMessage).count() == 0
    assert dovecot.message_count(mail_user.username) == 0


@pytest.mark.parametrize(
    "account_type, after_fetch", [("IMAPS", "delete"), ("IMAPS", "keep"), ("POP3S", "delete")]
)
def test_fetch_it_anyway_once_stores_the_oversized_message(
    app_ctx, dovecot, mail_user, account_type, after_fetch
):
    limit_one_megabyte()
    mail_user.deliver(big_mail("Huge scan"))
    mail_user.deliver(big_mail("Other scan"))
    mail_user.deliver(make_mail(subject="small"))
    account_id = add_account(dovecot, mail_user, account_type, after_fetch=after_fetch)
    assert fetch_account(account_id).new_tickets == 1
    row = next(r for r in oversized_messages(account_id) if r.subject == "Huge scan")

    fetch_oversized_once(row, db.session.get(MailAccount, account_id))
    account = db.session.get(MailAccount, account_id)
    assert account.fetch_requested_at is not None  # the next fetch is requested at once
    result = fetch_account(account_id)

    assert result.status == FetchStatus.OK and result.new_tickets == 1, result.message
    assert ticket_count() == 2
    assert [r.subject for r in oversized_messages(account_id)] == ["Other scan"]
    # Keep mode leaves what it stored on the server; delete mode leaves only the other scan.
    assert dovecot.message_count(mail_user.username) == (3 if after_fetch == "keep" else 1)
    # Only that one message: the next run takes nothing more and lists the other still.
    again = fetch_account(account_id)
    assert again.new_tickets == 0 and again.oversized == 1
    assert [item["message"] for item in attention("oversized")][0].count("Other scan") == 1


def test_fetch_log_of_a_run_holds_the_conversation_without_secrets(
    app, admin_client, dovecot, mail_user
):
    mail_user.deliver(make_mail(subject="logged"))
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS")
        fetch_account(account_id, FetchOptions())
        run = db.session.query(FetchRun).one()
        log = run.log
        run_id = run.id
    assert "LOGIN" in log and "new ticket" in log and "connecting to IMAPS" in log
    assert mail_user.password not in log
    page = admin_client.get(f"/mail-accounts/{account_id}/runs/{run_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "LOGIN" in text and "new ticket" in text and mail_user.password not in text
    edit = admin_client.get(f"/mail-accounts/{account_id}").get_data(as_text=True)
    assert f'href="/mail-accounts/{account_id}/runs/{run_id}"' in edit
    assert admin_client.get(f"/mail-accounts/{account_id + 1}/runs/{run_id}").status_code == 404


def test_fetch_log_keeps_its_first_and_last_lines():
    result = FetchResult(1, FetchStatus.OK)
    total = LOG_HEAD_LINES + LOG_TAIL_LINES + 1000
    for i in range(total):
        result.add_log(f"line {i} " + "x" * (5000 if i == 0 else 0))
    lines = result.log_text().splitlines()
    assert lines[0].startswith("line 0 ") and len(lines[0]) < 1100
    assert lines[LOG_HEAD_LINES] == "[... 1000 lines left out ...]"
    assert lines[-1] == f"line {total - 1} "
    assert len(lines) == LOG_HEAD_LINES + LOG_TAIL_LINES + 1


def test_status_names_accounts_as_the_admin_does(app_ctx, dovecot, mail_user):
    first = add_account(dovecot, mail_user, "IMAPS", password="wrong", comment="")
    twin = add_account(dovecot, mail_user, "IMAPS", password="wrong", comment="")
    pop = add_account(dovecot, mail_user, "POP3S", password="wrong")
    for account_id in (first, twin, pop):
        fetch_account(account_id)
    labels = account_labels()
    port = dovecot.imaps_port
    assert labels[pop] == f"{mail_user.username} — POP3S 127.0.0.1:{dovecot.pop3s_port}"
    assert labels[first].startswith(f"{mail_user.username} — IMAPS 127.0.0.1:{port} INBOX (")
    assert len(set(labels.values())) == 3
    report = status_report()
    errors = [item for item in report["attention"] if item["kind"] == "account_error"]
    assert sorted(item["subject"] for item in errors) == sorted(labels.values())
    for item in errors:
        assert "mail account" not in item["subject"]
        assert "fetched 0" not in item["message"] and "new tickets 0" not in item["message"]
        assert "AUTHENTICATIONFAILED" in item["message"] or "failed" in item["message"]
    assert {a["label"] for a in report["accounts"]} == set(labels.values())


def test_fixed_password_clears_the_error_after_save(app_ctx, dovecot, mail_user):
    account_id = add_account(dovecot, mail_user, "IMAPS", password="wrong")
    assert fetch_account(account_id).status == FetchStatus.ERROR
    account = db.session.get(MailAccount, account_id)
    assert account_badges([account])[account_id].kind == "error"
    assert len(attention("account_error")) == 1

    data = input_from_account(account)
    data.password = mail_user.password
    update_mail_account(account, data, "admin")
    account = db.session.get(MailAccount, account_id)
    assert account.fetch_requested_at is not None  # fetched at once, not in 10 minutes
    assert account_badges([account])[account_id].kind == "queued"
    assert fetch_account(account_id).status == FetchStatus.OK
    account = db.session.get(MailAccount, account_id)
    assert account_badges([account])[account_id].kind == "ok"
    assert attention("account_error") == []


def test_saving_a_working_account_without_connection_changes_fetches_on_schedule(
    app_ctx, dovecot, mail_user
):
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert fetch_account(account_id).status == FetchStatus.OK
    account = db.session.get(MailAccount, account_id)
    data = input_from_account(account)
    data.comment = "only the comment"
    update_mail_account(account, data, "admin")
    assert db.session.get(MailAccount, account_id).fetch_requested_at is None
    data.folder = "Archive"  # a connection setting: fetched at once
    update_mail_account(account, data, "admin")
    assert db.session.get(MailAccount, account_id).fetch_requested_at is not None


def test_successful_test_connection_requests_the_next_fetch(app, admin_client, dovecot, mail_user):
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS")
    response = admin_client.post(f"/mail-accounts/{account_id}/test", follow_redirects=True)
    assert "Connection OK" in response.get_data(as_text=True)
    assert "The next fetch was requested now." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(MailAccount, account_id).fetch_requested_at is not None


def test_state_json_needs_sign_in_and_holds_no_secret(app, client, admin_client):
    with app.app_context():
        account = MailAccount(
            type="IMAPS", host="mail.example.test", username="team", password="Secret-123",
            validity="valid", created_by="t", changed_by="t",
        )  # fmt: skip
        db.session.add(account)
        db.session.commit()
        account_id = account.id
    anonymous = app.test_client().get(f"/mail-accounts/state.json?id={account_id}")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    response = admin_client.get(f"/mail-accounts/state.json?id={account_id}&id=x")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Secret-123" not in response.get_data(as_text=True)
    [state] = response.get_json()["accounts"]
    assert state == {
        "id": account_id, "badge": "never", "badge_name": "never fetched", "text": "",
        "pending": False, "last_run": "never", "next_run": "-",
    }  # fmt: skip
