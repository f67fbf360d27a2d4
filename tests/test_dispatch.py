"""Dispatching new mail to queues, and trusted accounts' X-OTOBO-* headers."""

from __future__ import annotations

import pytest

from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.models import Article, MailAccount, Queue, SystemAddress, Ticket
from webapp.postmaster.context import build_context
from webapp.postmaster.pipeline import MessageOutcome, process_message
from webapp.settings.store import set_setting


def queue_id(name: str) -> int:
    return db.session.query(Queue).filter_by(name=name).one().id


def make_account(
    trusted: bool = False, dispatch: str = "to", queue: str | None = None
) -> MailAccount:
    """A mail account row; the pipeline never connects, so host and password are dummies."""
    account = MailAccount(
        type="IMAP",
        username=f"user{db.session.query(MailAccount).count()}",
        host="mail.example.test",
        trusted=trusted,
        dispatch=dispatch,
        queue_id=queue_id(queue) if queue else None,
    )
    db.session.add(account)
    db.session.commit()
    return account


def add_address(address: str, queue: str, validity: str = "valid") -> None:
    db.session.add(SystemAddress(address=address, queue_id=queue_id(queue), validity=validity))
    db.session.commit()


def add_queue(name: str, validity: str = "valid") -> None:
    db.session.add(Queue(name=name, validity=validity))
    db.session.commit()


def run(account: MailAccount | None, raw: bytes) -> MessageOutcome:
    """One message through the pipeline, committed like the fetch loop does."""
    outcome = process_message(build_context(account), raw)
    db.session.commit()
    return outcome


def ticket_of(outcome: MessageOutcome) -> Ticket:
    assert outcome.ticket_id is not None, outcome
    return db.session.get(Ticket, outcome.ticket_id)


def mail_with(headers: dict[str, str], **kwargs) -> bytes:
    return make_mail(headers=headers, **kwargs)


@pytest.fixture
def addresses(app_ctx):
    """support@ -> Misc, sales@ -> Postmaster, old@ (invalid) -> Junk."""
    add_address("support@example.test", "Misc")
    add_address("sales@example.test", "Postmaster")
    add_address("old@example.test", "Junk", validity="invalid")


# --------------------------------------------------------------------------- by To: field


def test_dispatch_by_to(addresses):
    outcome = run(make_account(), make_mail(to="Support <SUPPORT@example.test>"))
    assert outcome.kind == "new_ticket"
    assert ticket_of(outcome).queue.name == "Misc"
    assert any("support@example.test" in line for line in outcome.log)


def test_dispatch_by_cc_when_to_is_not_ours(addresses):
    raw = make_mail(to="someone@else.test", cc="sales@example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Postmaster"


def test_dispatch_by_delivered_to(addresses):
    raw = mail_with({"Delivered-To": "sales@example.test"}, to="list@lists.example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Postmaster"


def test_dispatch_by_x_original_to(addresses):
    raw = mail_with({"X-Original-To": "support@example.test"}, to="list@lists.example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Misc"


def test_resent_to_wins_over_to(addresses):
    raw = mail_with({"Resent-To": "sales@example.test"}, to="support@example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Postmaster"


def test_envelope_to_wins_over_to(addresses):
    raw = mail_with({"Envelope-To": "sales@example.test"}, to="support@example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Postmaster"


def test_to_wins_over_cc_and_delivered_to(addresses):
    raw = mail_with(
        {"Delivered-To": "sales@example.test"}, to="support@example.test", cc="sales@example.test"
    )
    assert ticket_of(run(make_account(), raw)).queue.name == "Misc"


def test_invalid_address_is_ignored(addresses):
    raw = make_mail(to="old@example.test", cc="sales@example.test")
    assert ticket_of(run(make_account(), raw)).queue.name == "Postmaster"


def test_address_of_invalid_queue_is_ignored(addresses):
    db.session.query(Queue).filter_by(name="Misc").one().validity = "invalid"
    db.session.commit()
    outcome = run(make_account(), make_mail(to="support@example.test"))
    assert ticket_of(outcome).queue.name == "Raw"


def test_no_match_goes_to_default_queue_raw(addresses):
    outcome = run(make_account(), make_mail(to="nobody@example.test"))
    assert ticket_of(outcome).queue.name == "Raw"
    assert any("default queue Raw" in line for line in outcome.log)


def test_default_queue_from_the_setting(addresses):
    set_setting("PostmasterDefaultQueue", "Junk")
    db.session.commit()
    assert ticket_of(run(make_account(), make_mail(to="x@y.test"))).queue.name == "Junk"


def test_invalid_default_queue_setting_falls_back_to_raw(addresses):
    set_setting("PostmasterDefaultQueue", "Gone")
    db.session.commit()
    ctx = build_context(make_account())
    assert any("'Gone'" in w for w in ctx.warnings)
    outcome = process_message(ctx, make_mail(to="x@y.test"))
    db.session.commit()
    assert ticket_of(outcome).queue.name == "Raw"


# --------------------------------------------------------------------------- by queue


def test_dispatch_by_selected_queue(addresses):
    account = make_account(dispatch="queue", queue="Junk")
    outcome = run(account, make_mail(to="support@example.test"))
    assert ticket_of(outcome).queue.name == "Junk"


def test_dispatch_by_invalid_selected_queue_uses_default(addresses):
    account = make_account(dispatch="queue", queue="Junk")
    db.session.query(Queue).filter_by(name="Junk").one().validity = "invalid"
    db.session.commit()
    outcome = run(account, make_mail(to="support@example.test"))
    assert ticket_of(outcome).queue.name == "Raw"
    assert any("invalid" in line for line in outcome.log)


# --------------------------------------------------------------------------- X-OTOBO-*


def test_trusted_account_obeys_x_otobo_queue(addresses):
    raw = mail_with({"X-OTOBO-Queue": "Junk"}, to="support@example.test")
    assert ticket_of(run(make_account(trusted=True), raw)).queue.name == "Junk"


def test_trusted_account_x_otobo_queue_overrides_selected_queue(addresses):
    account = make_account(trusted=True, dispatch="queue", queue="Misc")
    raw = mail_with({"x-otobo-queue": "Postmaster"})
    assert ticket_of(run(account, raw)).queue.name == "Postmaster"


def test_untrusted_account_ignores_x_otobo_queue(addresses):
    raw = mail_with(
        {
            "X-OTOBO-Queue": "Junk",
            "X-OTOBO-Priority": "5 very high",
            "X-OTOBO-State": "open",
            "X-OTOBO-Title": "Injected",
            "X-OTOBO-CustomerNo": "666",
        },
        to="support@example.test",
        subject="Real subject",
    )
    outcome = run(make_account(trusted=False), raw)
    ticket = ticket_of(outcome)
    assert ticket.queue.name == "Misc"
    assert (ticket.priority.name, ticket.state.name) == ("3 normal", "new")
    assert ticket.title == "Real subject"
    assert ticket.customer_no is None
    assert any("untrusted account: ignored" in line for line in outcome.log)


def test_untrusted_account_ignores_x_otobo_ignore(addresses):
    outcome = run(make_account(trusted=False), mail_with({"X-OTOBO-Ignore": "yes"}))
    assert outcome.kind == "new_ticket"


def test_unknown_x_otobo_queue_falls_back_with_log_line(addresses):
    raw = mail_with({"X-OTOBO-Queue": "Foo"}, to="nobody@example.test")
    outcome = run(make_account(trusted=True), raw)
    assert ticket_of(outcome).queue.name == "Raw"
    assert any("unknown X-OTOBO-Queue 'Foo'" in line and "Raw" in line for line in outcome.log)


def test_unknown_x_otobo_queue_keeps_the_dispatched_queue(addresses):
    raw = mail_with({"X-OTOBO-Queue": "Foo"}, to="sales@example.test")
    assert ticket_of(run(make_account(trusted=True), raw)).queue.name == "Postmaster"


def test_x_otobo_queue_naming_an_invalid_queue_is_unknown(addresses):
    add_queue("Closed down", validity="invalid")
    raw = mail_with({"X-OTOBO-Queue": "Closed down"}, to="sales@example.test")
    outcome = run(make_account(trusted=True), raw)
    assert ticket_of(outcome).queue.name == "Postmaster"
    assert any("unknown X-OTOBO-Queue" in line for line in outcome.log)


def test_x_otobo_ignore_skips_the_mail(addresses):
    outcome = run(make_account(trusted=True), mail_with({"X-OTOBO-Ignore": "yes"}))
    assert outcome.kind == "ignored"
    assert outcome.ticket_id is None and outcome.failed_mail_id is None
    assert any("X-OTOBO-Ignore" in line for line in outcome.log)
    assert db.session.query(Ticket).count() == 0
    assert db.session.query(Article).count() == 0


def test_x_otobo_priority_state_title_customer(addresses):
    raw = mail_with(
        {
            "X-OTOBO-Priority": "5 very high",
            "X-OTOBO-State": "open",
            "X-OTOBO-Title": "From the monitoring",
            "X-OTOBO-CustomerNo": "K-42",
            "X-OTOBO-CustomerUser": "bob@customer.test",
            "X-OTOBO-SenderType": "system",
            "X-OTOBO-IsVisibleForCustomer": "0",
        },
        subject="alert",
    )
    ticket = ticket_of(run(make_account(trusted=True), raw))
    assert ticket.priority.name == "5 very high"
    assert ticket.state.name == "open"
    assert ticket.title == "From the monitoring"
    assert (ticket.customer_no, ticket.customer_user) == ("K-42", "bob@customer.test")
    article = ticket.articles[0]
    assert article.sender_type == "system"
    assert article.is_visible_for_customer is False


def test_unknown_priority_and_state_fall_back_with_log_lines(addresses):
    raw = mail_with({"X-OTOBO-Priority": "9 apocalyptic", "X-OTOBO-State": "sleeping"})
    outcome = run(make_account(trusted=True), raw)
    ticket = ticket_of(outcome)
    assert (ticket.priority.name, ticket.state.name) == ("3 normal", "new")
    assert any("unknown X-OTOBO-Priority '9 apocalyptic'" in line for line in outcome.log)
    assert any("unknown X-OTOBO-State 'sleeping'" in line for line in outcome.log)


def test_defaults_of_a_new_ticket(addresses):
    raw = make_mail(frm="Alice Example <Alice@Customer.test>", subject="Printer broken")
    ticket = ticket_of(run(make_account(), raw))
    assert ticket.title == "Printer broken"
    assert (ticket.state.name, ticket.priority.name) == ("new", "3 normal")
    assert ticket.customer_user == "alice@customer.test"
    assert ticket.customer_no is None


def test_mail_without_subject_gets_placeholder_title(app_ctx):
    raw = b"From: a@example.test\r\nTo: b@example.test\r\n\r\nhello\r\n"
    assert ticket_of(run(make_account(), raw)).title == "(no subject)"
