"""`flask mail-account ...`: same validation as the form, exit code 2 on bad input, no secrets."""

from __future__ import annotations

import json

import pytest

from webapp.extensions import db
from webapp.mail_accounts.validators import PASSWORD_AGAIN
from webapp.models import MailAccount, OAuth2Profile

SECRET = "Walrus-Origami-4419-secret"
BASE = ["mail-account", "add", "--type", "IMAPS", "--host", "imap.example.com"]


def invoke(runner, args, password=SECRET):
    return runner.invoke(args=args, input=f"{password}\n" if password is not None else None)


def add(runner, *extra, password=SECRET):
    args = [*BASE, "--username", "support@example.com", "--password-stdin", *extra]
    return invoke(runner, args, password)


def count(app) -> int:
    with app.app_context():
        return db.session.query(MailAccount).count()


def test_add_prints_id_and_list_hides_password(runner, app):
    result = add(runner, "--port", "10993", "--folder", "Support", "--comment", "Team mail")
    assert result.exit_code == 0, result.output
    account_id = int(result.output.strip())
    listing = runner.invoke(args=["mail-account", "list", "--json"])
    assert listing.exit_code == 0
    assert SECRET not in listing.output
    (row,) = json.loads(listing.output)
    assert row["id"] == account_id
    assert row["port"] == 10993 and row["folder"] == "Support" and row["comment"] == "Team mail"
    assert row["has_password"] is True and "password" not in row
    assert {"type", "host", "username", "trusted", "dispatch", "queue", "validity"} <= set(row)
    plain = runner.invoke(args=["mail-account", "list"])
    assert "imap.example.com" in plain.output and SECRET not in plain.output
    with app.app_context():
        account = db.session.get(MailAccount, account_id)
        assert account.password == SECRET and account.created_by == "cli"


@pytest.mark.parametrize(
    ("args", "password", "option"),
    [
        (["mail-account", "add", "--host", "h.example.com", "--username", "u"], SECRET, "--type"),
        (["mail-account", "add", "--type", "IMAPS", "--username", "u"], SECRET, "--host"),
        ([*BASE], SECRET, "--username"),
        ([*BASE, "--username", "u"], None, "--password-stdin"),
        ([*BASE, "--username", "u", "--dispatch", "queue"], SECRET, "--queue"),
        ([*BASE, "--username", "u", "--port", "0"], SECRET, "--port"),
        ([*BASE, "--username", "u", "--validity", "nah"], SECRET, "--validity"),
        ([*BASE, "--username", "u", "--after-fetch", "move"], SECRET, "--move-folder"),
        ([*BASE, "--username", "u", "--fetch-interval", "-5"], SECRET, "--fetch-interval"),
        ([*BASE, "--username", "u", "--queue", "NoSuchQueue"], SECRET, "--queue"),
    ],
)
def test_add_rejects_bad_input(runner, app, args, password, option):
    if password is not None and "--password-stdin" not in args:
        args = [*args, "--password-stdin"]
    result = invoke(runner, args, password)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and option in lines[0]
    assert SECRET not in result.output
    assert count(app) == 0


def test_add_with_queue_dispatch(runner, app):
    result = add(runner, "--dispatch", "queue", "--queue", "Misc")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["dispatch"] == "queue" and row["queue"] == "Misc"


def test_update_changes_only_given_options(runner, app):
    account_id = int(add(runner, "--comment", "old").output)
    result = runner.invoke(args=["mail-account", "update", str(account_id), "--comment", "new"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        account = db.session.get(MailAccount, account_id)
        assert account.comment == "new" and account.password == SECRET


def test_update_host_needs_password_again(runner, app):
    account_id = int(add(runner).output)
    result = runner.invoke(
        args=["mail-account", "update", str(account_id), "--host", "evil.example.net"]
    )
    assert result.exit_code == 2
    assert PASSWORD_AGAIN in result.stderr
    with app.app_context():
        assert db.session.get(MailAccount, account_id).host == "imap.example.com"
    result = invoke(
        runner,
        ["mail-account", "update", str(account_id), "--host", "new.example.net"]
        + ["--password-stdin"],
        "another-secret",
    )
    assert result.exit_code == 0, result.output


def test_update_and_delete_unknown_id(runner, app):
    assert runner.invoke(args=["mail-account", "update", "42", "--comment", "x"]).exit_code == 2
    assert runner.invoke(args=["mail-account", "delete", "42"]).exit_code == 2


def test_delete(runner, app):
    account_id = int(add(runner).output)
    result = runner.invoke(args=["mail-account", "delete", str(account_id)])
    assert result.exit_code == 0
    assert count(app) == 0


def test_oauth2_add_without_password_prints_hint(runner, app):
    with app.app_context():
        db.session.add(
            OAuth2Profile(name="M365", provider="MicrosoftAzure", client_id="c", tenant_id="t")
        )
        db.session.commit()
    result = runner.invoke(
        args=[
            "mail-account",
            "add",
            "--type",
            "IMAPOAuth2",
            "--username",
            "team@example.com",
            "--oauth2-profile",
            "M365",
            "--shared-mailbox",
        ]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().isdigit()
    assert "mail-account authorize" in result.stderr
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["host"] == "outlook.office365.com" and row["oauth2_profile"] == "M365"
    assert row["shared_mailbox"] is True


def test_list_json_times_are_utc_with_z(runner):
    assert add(runner).exit_code == 0
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["created_at"].endswith("Z") and row["changed_at"].endswith("Z")
    assert row["last_run_at"] is None


def test_test_and_fetch_of_an_unknown_account_fail_with_exit_2(runner):
    for args in (["test", "999"], ["fetch", "--mail-account-id", "999"]):
        result = runner.invoke(args=["mail-account", *args])
        assert result.exit_code == 2
        assert result.stderr == "Error: no mail account with id 999\n"


def test_test_reports_a_refused_connection_with_exit_1(runner):
    result = add(runner, "--host", "127.0.0.1", "--port", "1")  # refused at once
    assert result.exit_code == 0, result.output
    tested = runner.invoke(args=["mail-account", "test", result.output.strip()])
    assert tested.exit_code == 1
    assert tested.stderr.startswith("Connection failed: ") and SECRET not in tested.output


def test_fetch_on_arrival_is_on_by_default_and_push_options_switch_it(runner, app):
    account_id = int(add(runner).output.strip())
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["push"] is True
    assert row["push_status"].startswith("not connected")
    result = runner.invoke(args=["mail-account", "update", str(account_id), "--no-push"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["push"] is False and row["push_status"].startswith("switched off")
    runner.invoke(args=["mail-account", "update", str(account_id), "--push"])
    with app.app_context():
        assert db.session.get(MailAccount, account_id).push is True


def test_pop3_accounts_show_no_push_status(runner, app):
    args = ["mail-account", "add", "--type", "POP3S", "--host", "pop.example.com"]
    result = invoke(runner, [*args, "--username", "pop@example.com", "--password-stdin"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(runner.invoke(args=["mail-account", "list", "--json"]).output)
    assert row["push_status"] is None
