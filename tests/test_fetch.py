"""Fetching mail from a real Dovecot into tickets, exactly once."""

from __future__ import annotations

import collections

import pytest

from tests.fetching import add_account, run_cli, stored_message_ids, ticket_count
from tests.mailgen import make_mail, realistic_corpus
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount, OversizedMessage, Queue, SystemAddress
from webapp.postmaster.fetch import FetchOptions, fetch_account
from webapp.settings.store import set_setting
from webapp.states import FetchTrigger

ALL_TYPES = ["IMAP", "IMAPS", "IMAPTLS", "POP3", "POP3S", "POP3TLS"]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


def mails(n: int, prefix: str = "m") -> list[bytes]:
    return [make_mail(subject=f"{prefix} {i}", message_id=f"<{prefix}-{i}@test>") for i in range(n)]


@pytest.mark.parametrize("account_type", ALL_TYPES)
def test_fetch_stores_every_message_once_and_empties_the_mailbox(
    app_ctx, dovecot, mail_user, account_type
):
    for raw in mails(5):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user, account_type)

    result = fetch_account(account_id)

    assert result.status == "ok", result.message
    assert result.new_tickets == 5
    assert sorted(stored_message_ids()) == sorted(f"<m-{i}@test>" for i in range(5))
    assert dovecot.message_count(mail_user.username) == 0


def test_second_fetch_finds_nothing_new(app_ctx, dovecot, mail_user):
    for raw in mails(3):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user)
    fetch_account(account_id)
    result = fetch_account(account_id)
    assert result.status == "ok"
    assert result.fetched == 0
    assert ticket_count() == 3


def test_certificate_is_verified_without_the_ca_file(app, app_ctx, dovecot, mail_user):
    app.config["MAIL_CA_FILE"] = None
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    result = fetch_account(account_id)
    assert result.status == "error"
    assert "certificate" in result.message.lower()
    assert dovecot.message_count(mail_user.username) == 1


def test_verify_tls_off_accepts_a_self_signed_server(app, app_ctx, dovecot, mail_user):
    app.config["MAIL_CA_FILE"] = None
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "POP3S", verify_tls=False)
    assert fetch_account(account_id).status == "ok"
    assert ticket_count() == 1


def test_wrong_password_is_reported_and_others_still_fetch(app, app_ctx, dovecot, mail_user):
    mail_user.deliver(make_mail())
    bad = add_account(dovecot, mail_user, "IMAPS", password="wrong", host="127.0.0.1")
    good = add_account(dovecot, mail_user, "POP3S")
    result = run_cli(app, "mail-account", "fetch")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{bad} ") and "error" in line for line in lines), lines
    assert any(line.startswith(f"{good} ") and "new tickets 1" in line for line in lines), lines
    assert "wrong" not in result.stdout.replace("wrong password", "")
    db.session.expire_all()
    assert db.session.get(MailAccount, bad).last_status == "error"


def test_missing_folder_lists_the_folders_that_exist(app_ctx, dovecot, mail_user):
    dovecot.create_folder(mail_user.username, "Support")
    account_id = add_account(dovecot, mail_user, "IMAPS", folder="Nope")
    result = fetch_account(account_id)
    assert result.status == "error"
    assert "Nope" in result.message and "Support" in result.message


def test_unreachable_host_is_a_clear_error(app_ctx, dovecot, mail_user):
    from tests.servers.dovecot import free_port

    account_id = add_account(dovecot, mail_user, "IMAPS", port=free_port())
    result = fetch_account(account_id)
    assert result.status == "error"
    assert "127.0.0.1" in result.message


def test_folder_is_fetched_and_other_folders_stay(app_ctx, dovecot, mail_user):
    dovecot.create_folder(mail_user.username, "Support")
    mail_user.deliver(make_mail(subject="in support"), folder="Support")
    mail_user.deliver(make_mail(subject="in inbox"))
    account_id = add_account(dovecot, mail_user, "IMAPS", folder="Support")
    assert fetch_account(account_id).new_tickets == 1
    assert dovecot.message_count(mail_user.username, "Support") == 0
    assert dovecot.message_count(mail_user.username) == 1


def test_a_thousand_mixed_messages_are_each_stored_once(app_ctx, dovecot, mail_user):
    dovecot.deliver_many(mail_user.username, realistic_corpus(1000, seed=7))
    account_id = add_account(dovecot, mail_user, "IMAPTLS")
    result = fetch_account(account_id)
    assert result.status == "ok", result.message
    assert result.fetched == 1000
    stored = stored_message_ids()
    assert len(stored) == 1000
    duplicates = [m for m, n in collections.Counter(stored).items() if n > 1 and m != "<failed>"]
    assert duplicates == []
    assert dovecot.message_count(mail_user.username) == 0


def test_pop3_fetches_more_than_twenty_messages_per_run(app_ctx, dovecot, mail_user):
    dovecot.deliver_many(mail_user.username, mails(60))
    account_id = add_account(dovecot, mail_user, "POP3")
    assert fetch_account(account_id).new_tickets == 60
    assert dovecot.message_count(mail_user.username) == 0


def test_per_run_cap_leaves_the_rest_for_the_next_run(app_ctx, dovecot, mail_user):
    set_setting("MaxMessagesPerRun", "4")
    db.session.commit()
    dovecot.deliver_many(mail_user.username, mails(10))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert fetch_account(account_id).fetched == 4
    assert dovecot.message_count(mail_user.username) == 6


def test_dispatch_by_to_address_linked_to_a_queue(app_ctx, dovecot, mail_user):
    misc = db.session.query(Queue).filter_by(name="Misc").one()
    db.session.add(SystemAddress(address="sales@example.test", queue_id=misc.id))
    db.session.commit()
    mail_user.deliver(make_mail(to="sales@example.test", message_id="<sales@test>"))
    mail_user.deliver(make_mail(to="other@example.test", message_id="<other@test>"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id)
    from webapp.models import Article

    queue_of = {a.message_id: a.ticket.queue.name for a in db.session.query(Article)}
    assert queue_of == {"<sales@test>": "Misc", "<other@test>": "Raw"}


def test_dispatch_by_selected_queue(app_ctx, dovecot, mail_user):
    junk = db.session.query(Queue).filter_by(name="Junk").one()
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "POP3S", dispatch="queue", queue_id=junk.id)
    fetch_account(account_id)
    from webapp.models import Ticket

    assert [t.queue.name for t in db.session.query(Ticket)] == ["Junk"]


@pytest.mark.parametrize("trusted,expected", [(True, "Postmaster"), (False, "Raw")])
def test_x_otobo_queue_is_obeyed_only_for_trusted_accounts(
    app_ctx, dovecot, mail_user, trusted, expected
):
    mail_user.deliver(make_mail(headers={"X-OTOBO-Queue": "Postmaster"}))
    account_id = add_account(dovecot, mail_user, "IMAPS", trusted=trusted)
    fetch_account(account_id)
    from webapp.models import Ticket

    assert [t.queue.name for t in db.session.query(Ticket)] == [expected]


def test_follow_ups_by_subject_and_by_references(app_ctx, dovecot, mail_user):
    from webapp.models import Ticket

    mail_user.deliver(make_mail(subject="Printer broken", message_id="<first@test>"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id)
    ticket = db.session.query(Ticket).one()
    mail_user.deliver(make_mail(subject=f"Re: [Ticket#{ticket.number}] Printer broken"))
    mail_user.deliver(make_mail(subject="Re: Printer", references="<first@test>"))
    result = fetch_account(account_id)
    assert result.follow_ups == 2
    assert ticket_count() == 1
    db.session.refresh(ticket)
    assert len(ticket.articles) == 3


def test_oversized_mail_stays_on_the_server_and_is_reported_once(app_ctx, dovecot, mail_user):
    set_setting("MaxMessageSizeMB", "1")
    db.session.commit()
    big = make_mail(
        subject="Huge scan", attachments=[("scan.pdf", "application/pdf", b"x" * 1_500_000)]
    )
    mail_user.deliver(big)
    mail_user.deliver(make_mail(subject="small"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    first = fetch_account(account_id)
    assert (first.new_tickets, first.oversized) == (1, 1)
    assert any("Huge scan" in line for line in first.log)
    second = fetch_account(account_id)
    assert not any("Huge scan" in line for line in second.log)
    assert db.session.query(OversizedMessage).count() == 1
    assert dovecot.message_count(mail_user.username) == 1


def test_keep_mode_marks_read_and_never_fetches_twice(app_ctx, dovecot, mail_user):
    for raw in mails(3):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user, "IMAPS", after_fetch="keep")
    assert fetch_account(account_id).new_tickets == 3
    assert dovecot.message_count(mail_user.username) == 3
    assert all("S" in flags for flags in dovecot.flags(mail_user.username))
    mail_user.deliver(make_mail(subject="later", message_id="<later@test>"))
    assert fetch_account(account_id).new_tickets == 1
    assert ticket_count() == 4


def test_new_uidvalidity_recognises_stored_mail_by_content(app_ctx, dovecot, mail_user):
    """A rebuilt folder gets new UIDs: mail stored before is known by its hash, not twice."""
    for raw in mails(3):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user, "IMAPS", after_fetch="keep")
    assert fetch_account(account_id).new_tickets == 3
    maildir = dovecot.maildir(mail_user.username)
    for name in ("dovecot-uidlist", "dovecot-uidvalidity"):
        (maildir / name).unlink(missing_ok=True)
    for index in maildir.glob("dovecot.index*"):
        index.unlink()
    mail_user.deliver(make_mail(subject="after the rebuild", message_id="<after@test>"))
    result = fetch_account(account_id)
    assert "UIDVALIDITY" in "\n".join(result.log)
    assert (result.new_tickets, result.duplicates) == (1, 3)
    assert ticket_count() == 4


def test_keep_mode_over_pop3_relies_on_uidl(app_ctx, dovecot, mail_user):
    for raw in mails(3):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user, "POP3S", after_fetch="keep")
    fetch_account(account_id)
    assert fetch_account(account_id).new_tickets == 0
    assert ticket_count() == 3
    assert dovecot.message_count(mail_user.username) == 3


def test_move_mode_moves_to_the_folder(app_ctx, dovecot, mail_user):
    dovecot.create_folder(mail_user.username, "Done")
    for raw in mails(2):
        mail_user.deliver(raw)
    account_id = add_account(dovecot, mail_user, "IMAPS", after_fetch="move", move_folder="Done")
    assert fetch_account(account_id).new_tickets == 2
    assert dovecot.message_count(mail_user.username) == 0
    assert dovecot.message_count(mail_user.username, "Done") == 2


def test_fetch_log_records_the_run(app_ctx, dovecot, mail_user):
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id, FetchOptions(trigger=FetchTrigger.CLI, owner="test"))
    run = db.session.query(FetchRun).one()
    assert (run.status, run.fetched, run.new_tickets) == ("ok", 1, 1)
    assert run.finished_at is not None


def test_pipeline_warnings_reach_the_fetch_log(app_ctx, dovecot, mail_user):
    set_setting("PostmasterDefaultQueue", "Gone")  # deleted queue: the pipeline falls back
    db.session.commit()
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    result = fetch_account(account_id)
    assert result.new_tickets == 1, result.message
    run = db.session.get(FetchRun, result.run_id)
    assert "warning: default queue 'Gone' is missing or invalid, using Raw" in run.log.splitlines()


def test_a_held_lease_makes_a_second_fetch_wait(app, app_ctx, dovecot, mail_user):
    from webapp.postmaster.lease import claim_account

    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert claim_account(account_id, "someone-else", 300) is not None
    result = fetch_account(account_id)
    assert result.status == "busy"
    assert "someone-else" in result.message


def test_debug_shows_the_conversation_without_the_password(app, app_ctx, dovecot, mail_user):
    mail_user.deliver(make_mail())
    add_account(dovecot, mail_user, "IMAP")
    result = run_cli(app, "mail-account", "fetch", "--debug")
    assert result.returncode == 0, result.stderr
    assert "LOGIN" in result.stderr.upper()
    assert mail_user.password not in result.stdout + result.stderr


def test_malformed_mail_is_kept_as_failed_mail_and_removed_from_server(app_ctx, dovecot, mail_user):
    from tests.mailgen import deeply_nested
    from webapp.models import FailedMail

    mail_user.deliver(deeply_nested(5000))
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    result = fetch_account(account_id)
    assert (result.failed, result.new_tickets) == (1, 1)
    assert db.session.query(FailedMail).count() == 1
    assert dovecot.message_count(mail_user.username) == 0
