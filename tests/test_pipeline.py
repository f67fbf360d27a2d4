"""The per-message pipeline: tickets, follow-ups, numbers, failed mail and reprocessing."""

from __future__ import annotations

import re
import time
from unittest import mock

import pytest

from tests.mailgen import make_mail, realistic_corpus
from tests.test_dispatch import make_account, run, ticket_of
from webapp.extensions import db
from webapp.models import (
    Article,
    Attachment,
    FailedMail,
    RawMail,
    Ticket,
    TicketCounter,
    TicketState,
)
from webapp.postmaster import blobs, pipeline
from webapp.postmaster import tickets as tickets_module
from webapp.postmaster.context import build_context
from webapp.postmaster.parse import ParseLimits
from webapp.postmaster.pipeline import (
    delete_failed_mail,
    process_batch,
    process_message,
    reprocess_failed_mail,
)
from webapp.postmaster.tickets import next_ticket_number
from webapp.settings.store import set_setting

NUMBER_RE = re.compile(r"^\d{8}10\d{6}$")


def set_state(ticket: Ticket, name: str) -> None:
    ticket.state_id = db.session.query(TicketState).filter_by(name=name).one().id
    db.session.commit()


# --------------------------------------------------------------------------- new tickets


def test_new_ticket_stores_article_attachments_and_raw_mail(app_ctx):
    raw = make_mail(
        frm="Alice <alice@example.test>",
        to="support@example.test",
        cc="Bob <bob@example.test>",
        subject="Grüße",
        body="plain body",
        html="<p>html <b>body</b></p><script>alert(1)</script>",
        message_id="<m1@example.test>",
        references=["<r0@x.test>"],
        attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 data")],
    )
    account = make_account()
    outcome = run(account, raw)
    assert outcome.kind == "new_ticket"
    assert outcome.message_id == "<m1@example.test>"
    ticket = ticket_of(outcome)
    assert NUMBER_RE.match(ticket.number)
    article = db.session.get(Article, outcome.article_id)
    assert article.ticket_id == ticket.id
    assert article.from_addr == "Alice <alice@example.test>"
    assert article.to_addr == "support@example.test"
    assert article.cc_addr == "Bob <bob@example.test>"
    assert article.subject == "Grüße"
    assert article.message_id == "<m1@example.test>"
    assert article.references == "<r0@x.test>"
    assert article.sent_at is not None and article.sent_at.tzinfo is None
    assert article.body_text.strip() == "plain body"
    assert "<script>" not in article.body_html and "<b>body</b>" in article.body_html
    assert article.sender_type == "customer"
    assert article.mail_account_id == account.id
    assert article.raw_mail.content == raw
    assert article.raw_mail.size == len(raw) and len(article.raw_mail.sha256) == 64
    (attachment,) = article.attachments
    assert (attachment.filename, attachment.content_type) == ("report.pdf", "application/pdf")
    assert attachment.content == b"%PDF-1.4 data" and attachment.size == 13
    assert db.session.query(RawMail).count() == 1


def test_large_raw_mail_and_attachment_are_stored_byte_identical(app_ctx, monkeypatch):
    # Over blobs.LARGE_BLOB: on SQLite written by incremental blob I/O, in 1 MB slices.
    written: list[int] = []

    def spy(conn, table, column, values):
        written.extend(len(v) for v in values.values())
        blobs.write_large_values(conn, table, column, values)

    monkeypatch.setattr(tickets_module, "write_large_values", spy)
    pdfs = [bytes(range(256)) * (9000 + i) for i in range(2)]  # ≈ 2.3 MB each, not 1 MB slices
    raws = [
        make_mail(subject=f"big {i}", attachments=[("scan.pdf", "application/pdf", pdf)])
        for i, pdf in enumerate(pdfs)
    ]
    raws.insert(1, make_mail(subject="small"))
    outcomes = process_batch(build_context(make_account()), raws)
    db.session.commit()
    for raw, outcome in zip(raws, outcomes, strict=True):
        assert outcome.kind == "new_ticket"
        assert db.session.get(RawMail, outcome.raw_mail_id).content == raw
    for pdf, outcome in zip(pdfs, [outcomes[0], outcomes[2]], strict=True):
        (attachment,) = db.session.get(Article, outcome.article_id).attachments
        assert attachment.content == pdf and attachment.size == len(pdf)
    if db.engine.dialect.name == "sqlite":
        assert sorted(written) == sorted([len(raws[0]), len(raws[2]), *map(len, pdfs)])
    else:
        assert written == []  # PostgreSQL: the plain INSERT


def test_given_raw_mail_is_used_not_stored_again(app_ctx):
    raw = make_mail()
    stored = RawMail(sha256="x" * 64, size=len(raw), content=raw)
    db.session.add(stored)
    db.session.flush()
    outcome = process_message(build_context(make_account()), raw, raw_mail=stored)
    db.session.commit()
    assert outcome.raw_mail_id == stored.id
    assert db.session.query(RawMail).count() == 1


def test_nul_characters_are_dropped(app_ctx):
    raw = b"From: a@example.test\r\nSubject: nul\x00here\r\n\r\nbody\x00with\x00nuls\r\n"
    ticket = ticket_of(run(make_account(), raw))
    assert "\x00" not in ticket.title and "nul" in ticket.title
    assert "\x00" not in ticket.articles[0].body_text


# --------------------------------------------------------------------------- numbers


def test_ticket_number_format_and_uniqueness_for_200_tickets(app_ctx):
    account = make_account()
    ctx = build_context(account)
    numbers = []
    for i in range(200):
        outcome = process_message(ctx, make_mail(subject=f"mail {i}"))
        numbers.append(db.session.get(Ticket, outcome.ticket_id).number)
        if i % 50 == 49:
            db.session.commit()
    db.session.commit()
    assert len(set(numbers)) == 200
    assert all(NUMBER_RE.match(n) for n in numbers)
    counters = [int(n[10:]) for n in numbers]
    assert counters == sorted(counters) and counters[-1] - counters[0] == 199


def test_ticket_number_counts_per_day(app_ctx):
    assert next_ticket_number(db.session.connection(), "20261123") == "2026112310000001"
    assert next_ticket_number(db.session.connection(), "20261123") == "2026112310000002"
    assert next_ticket_number(db.session.connection(), "20261124") == "2026112410000001"
    db.session.commit()
    assert db.session.get(TicketCounter, "20261123").last == 2


# --------------------------------------------------------------------------- follow-ups


def test_follow_up_by_ticket_number_in_subject(app_ctx):
    account = make_account()
    first = ticket_of(run(account, make_mail(subject="Printer")))
    outcome = run(account, make_mail(subject=f"RE: [Ticket#{first.number}] Printer"))
    assert outcome.kind == "follow_up"
    assert outcome.ticket_id == first.id
    assert len(first.articles) == 2
    assert any("subject" in line for line in outcome.log)


def test_follow_up_uses_the_ticket_hook_setting(app_ctx):
    set_setting("TicketHook", "Case:")
    db.session.commit()
    account = make_account()
    first = ticket_of(run(account, make_mail()))
    assert run(account, make_mail(subject=f"[Ticket#{first.number}]")).kind == "new_ticket"
    outcome = run(account, make_mail(subject=f"Re: [Case:{first.number}]"))
    assert (outcome.kind, outcome.ticket_id) == ("follow_up", first.id)


def test_unknown_ticket_number_makes_a_new_ticket(app_ctx):
    outcome = run(make_account(), make_mail(subject="[Ticket#2020010110000099] hello"))
    assert outcome.kind == "new_ticket"


def test_follow_up_by_in_reply_to(app_ctx):
    account = make_account()
    first = ticket_of(run(account, make_mail(message_id="<orig@example.test>")))
    outcome = run(account, make_mail(subject="Re: x", in_reply_to="<orig@example.test>"))
    assert (outcome.kind, outcome.ticket_id) == ("follow_up", first.id)
    assert any("In-Reply-To" in line for line in outcome.log)


def test_follow_up_by_references(app_ctx):
    account = make_account()
    first = ticket_of(run(account, make_mail(message_id="<orig@example.test>")))
    run(account, make_mail(message_id="<other@example.test>"))
    raw = make_mail(subject="Re: x", references=["<orig@example.test>", "<unknown@x.test>"])
    outcome = run(account, raw)
    assert (outcome.kind, outcome.ticket_id) == ("follow_up", first.id)
    assert any("References" in line for line in outcome.log)


def test_follow_up_chain_keeps_one_ticket(app_ctx):
    account = make_account()
    first = ticket_of(run(account, make_mail(message_id="<a@x.test>")))
    run(account, make_mail(message_id="<b@x.test>", in_reply_to="<a@x.test>"))
    outcome = run(account, make_mail(message_id="<c@x.test>", in_reply_to="<b@x.test>"))
    assert outcome.ticket_id == first.id
    assert [a.message_id for a in first.articles] == ["<a@x.test>", "<b@x.test>", "<c@x.test>"]


def test_follow_up_keeps_new_and_reopens_closed(app_ctx):
    account = make_account()
    ticket = ticket_of(run(account, make_mail(message_id="<a@x.test>")))
    run(account, make_mail(in_reply_to="<a@x.test>"))
    assert ticket.state.name == "new"
    set_state(ticket, "closed successful")
    outcome = run(account, make_mail(in_reply_to="<a@x.test>"))
    db.session.refresh(ticket)
    assert ticket.state.name == "open"
    assert any("closed successful -> open" in line for line in outcome.log)


def test_trusted_follow_up_state_and_priority(app_ctx):
    account = make_account(trusted=True)
    ticket = ticket_of(run(account, make_mail(message_id="<a@x.test>")))
    headers = {"X-OTOBO-FollowUp-State": "pending reminder", "X-OTOBO-FollowUp-Priority": "4 high"}
    run(account, make_mail(in_reply_to="<a@x.test>", headers=headers))
    db.session.refresh(ticket)
    assert (ticket.state.name, ticket.priority.name) == ("pending reminder", "4 high")


def test_untrusted_follow_up_state_header_is_ignored(app_ctx):
    account = make_account(trusted=False)
    ticket = ticket_of(run(account, make_mail(message_id="<a@x.test>")))
    set_state(ticket, "closed successful")
    headers = {
        "X-OTOBO-FollowUp-State": "closed successful",
        "X-OTOBO-FollowUp-Priority": "1 very low",
    }
    run(account, make_mail(in_reply_to="<a@x.test>", headers=headers))
    db.session.refresh(ticket)
    assert (ticket.state.name, ticket.priority.name) == ("open", "3 normal")


def test_follow_up_ignores_x_otobo_queue(app_ctx):
    account = make_account(trusted=True)
    ticket = ticket_of(run(account, make_mail(message_id="<a@x.test>")))
    run(account, make_mail(in_reply_to="<a@x.test>", headers={"X-OTOBO-Queue": "Junk"}))
    db.session.refresh(ticket)
    assert ticket.queue.name == "Raw"


# --------------------------------------------------------------------------- failures


def test_malformed_mail_becomes_failed_mail_and_reprocess_works(app_ctx, monkeypatch):
    account = make_account()
    raw = make_mail(subject="needs a second try", body="x" * 2000)
    # The mail is fine; the limits at the time of the fetch were not.
    monkeypatch.setattr(
        pipeline, "parse_many_with_limit", in_process_parse(lambda r: _strict_parse(r))
    )
    outcome = run(account, raw)
    assert outcome.kind == "failed"
    assert outcome.ticket_id is None
    failed = db.session.get(FailedMail, outcome.failed_mail_id)
    assert "cannot parse" in failed.error
    assert failed.raw_mail.content == raw
    assert failed.mail_account_id == account.id
    assert db.session.query(Ticket).count() == 0

    # Failing again keeps it, with the new error; nothing loops.
    monkeypatch.setattr(pipeline, "parse_many_with_limit", in_process_parse(_boom))
    again = reprocess_failed_mail(failed)
    db.session.commit()
    assert again.kind == "failed"
    assert db.session.get(FailedMail, failed.id).error == "RuntimeError: still broken"

    monkeypatch.undo()
    done = reprocess_failed_mail(failed)
    db.session.commit()
    assert done.kind == "new_ticket"
    assert db.session.query(FailedMail).count() == 0
    ticket = ticket_of(done)
    assert ticket.title == "needs a second try"
    assert ticket.articles[0].mail_account_id == account.id
    assert db.session.query(RawMail).count() == 1  # the article kept the raw mail


def _strict_parse(raw: bytes):
    from webapp.postmaster.parse import parse_mail

    return parse_mail(raw, ParseLimits(max_header_bytes=10))


def _boom(raw: bytes):
    raise RuntimeError("still broken")


def test_unparseable_mail_is_kept_as_failed_mail(app_ctx):
    outcome = run(make_account(), b"   \r\n")
    assert outcome.kind == "failed"
    assert "empty message" in db.session.get(FailedMail, outcome.failed_mail_id).error


def test_reprocess_uses_the_accounts_trusted_flag_and_queue(app_ctx, monkeypatch):
    account = make_account(trusted=True, dispatch="queue", queue="Misc")
    raw = make_mail(headers={"X-OTOBO-Priority": "4 high"})
    monkeypatch.setattr(pipeline, "parse_many_with_limit", in_process_parse(_boom))
    failed_id = run(account, raw).failed_mail_id
    monkeypatch.undo()
    outcome = reprocess_failed_mail(db.session.get(FailedMail, failed_id))
    db.session.commit()
    ticket = ticket_of(outcome)
    assert (ticket.queue.name, ticket.priority.name) == ("Misc", "4 high")


def test_error_in_the_middle_rolls_back_only_that_message(app_ctx, monkeypatch):
    """A failure after rows were flushed leaves no half ticket, and the batch goes on."""
    account = make_account()
    ctx = build_context(account)
    good1 = process_message(ctx, make_mail(subject="one"))
    real_create = pipeline.create_tickets
    calls = {"n": 0}

    def create_then_fail(*args, **kwargs):
        calls["n"] += 1
        real_create(*args, **kwargs)
        db.session.flush()  # the ticket and article really hit the database...
        raise ValueError("disk full of sadness")  # ...then the message fails

    with mock.patch.object(pipeline, "create_tickets", create_then_fail):
        bad = process_message(ctx, make_mail(subject="two"))
    good2 = process_message(ctx, make_mail(subject="three"))
    db.session.commit()
    assert calls["n"] == 1
    assert (good1.kind, bad.kind, good2.kind) == ("new_ticket", "failed", "new_ticket")
    assert "disk full of sadness" in db.session.get(FailedMail, bad.failed_mail_id).error
    titles = sorted(t.title for t in db.session.query(Ticket))
    assert titles == ["one", "three"]
    assert db.session.query(Article).count() == 2


def test_database_error_in_the_middle_does_not_poison_the_batch(app_ctx, monkeypatch):
    """An IntegrityError (on PostgreSQL it aborts the transaction) only fails its message."""
    ctx = build_context(make_account())
    first = process_message(ctx, make_mail(subject="one"))
    taken = db.session.get(Ticket, first.ticket_id).number
    monkeypatch.setattr(
        tickets_module, "reserve_ticket_numbers", lambda conn, count, day=None: [taken] * count
    )
    bad = process_message(ctx, make_mail(subject="two"))
    monkeypatch.undo()
    good = process_message(ctx, make_mail(subject="three"))
    db.session.commit()
    assert (first.kind, bad.kind, good.kind) == ("new_ticket", "failed", "new_ticket")
    assert "IntegrityError" in db.session.get(FailedMail, bad.failed_mail_id).error
    assert sorted(t.title for t in db.session.query(Ticket)) == ["one", "three"]


def test_process_message_never_commits(app_ctx):
    """The fetch loop decides: rolling back its batch must leave nothing behind."""
    account_id = make_account().id
    db.session.close()  # the next statement starts a fresh transaction, as in a fetch batch
    from webapp.models import MailAccount

    ctx = build_context(db.session.get(MailAccount, account_id))
    db.session.rollback()  # reading the caches must not matter either
    for i in range(3):
        process_message(ctx, make_mail(subject=f"m{i}"))
    process_message(ctx, b"")  # a failed one too
    db.session.rollback()
    assert db.session.query(Ticket).count() == 0
    assert db.session.query(RawMail).count() == 0
    assert db.session.query(FailedMail).count() == 0


def test_database_trouble_propagates_to_the_fetch_loop(app_ctx, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def locked(*args, **kwargs):
        raise OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr(pipeline, "create_tickets", locked)
    with pytest.raises(OperationalError):
        process_message(build_context(make_account()), make_mail())
    db.session.rollback()
    assert db.session.query(FailedMail).count() == 0


def test_delete_failed_mail_removes_its_raw_source(app_ctx):
    outcome = run(make_account(), b"")
    delete_failed_mail(db.session.get(FailedMail, outcome.failed_mail_id))
    db.session.commit()
    assert db.session.query(FailedMail).count() == 0
    assert db.session.query(RawMail).count() == 0


def test_attachment_rows_match_parsed_attachments(app_ctx):
    raw = make_mail(attachments=[("a.txt", "text/plain", b"A"), ("b.html", "text/html", b"<b>")])
    article = ticket_of(run(make_account(), raw)).articles[0]
    assert sorted(a.filename for a in article.attachments) == ["a.txt", "b.html"]
    assert db.session.query(Attachment).count() == 2


# --------------------------------------------------------------------------- batches


def test_batch_outcomes_come_back_in_the_order_of_the_mails(app_ctx):
    mails = [make_mail(subject=f"mail {i}") for i in range(20)]
    outcomes = process_batch(build_context(make_account()), mails)
    db.session.commit()
    titles = [db.session.get(Ticket, o.ticket_id).title for o in outcomes]
    assert titles == [f"mail {i}" for i in range(20)]
    numbers = [db.session.get(Ticket, o.ticket_id).number for o in outcomes]
    assert numbers == sorted(numbers) and len(set(numbers)) == 20


def test_reply_to_a_mail_of_the_same_batch_is_its_follow_up(app_ctx):
    first = make_mail(subject="Printer broken", message_id="<first@x.test>")
    reply = make_mail(subject="Re: Printer broken", in_reply_to="<first@x.test>")
    outcomes = process_batch(build_context(make_account()), [first, reply])
    db.session.commit()
    assert [o.kind for o in outcomes] == ["new_ticket", "follow_up"]
    assert outcomes[1].ticket_id == outcomes[0].ticket_id


def test_replies_after_the_batch_split_still_find_the_ticket(app_ctx):
    """Replies are looked up once per batch; what earlier chunks wrote is found too."""
    stored = run(make_account(), make_mail(subject="Old", message_id="<old@x.test>"))
    mails = [
        make_mail(subject="New", message_id="<new@x.test>"),
        make_mail(subject="Re: New", in_reply_to="<new@x.test>"),  # splits the batch
        make_mail(subject="Re: New again", references=["<new@x.test>"]),
        make_mail(subject="Re: Old", in_reply_to="<old@x.test>"),
    ]
    outcomes = process_batch(build_context(make_account()), mails)
    db.session.commit()
    assert [o.kind for o in outcomes] == ["new_ticket", "follow_up", "follow_up", "follow_up"]
    assert outcomes[1].ticket_id == outcomes[2].ticket_id == outcomes[0].ticket_id
    assert outcomes[3].ticket_id == stored.ticket_id


def test_two_follow_ups_to_one_ticket_in_a_batch_both_change_its_state(app_ctx):
    first = run(make_account(), make_mail(subject="Hello"))
    ticket = ticket_of(first)
    set_state(ticket, "closed successful")
    hook = f"[Ticket#{ticket.number}]"
    outcomes = process_batch(
        build_context(make_account()),
        [make_mail(subject=f"Re: {hook} one"), make_mail(subject=f"Re: {hook} two")],
    )
    db.session.commit()
    assert [o.kind for o in outcomes] == ["follow_up", "follow_up"]
    assert any("state closed successful -> open" in line for line in outcomes[0].log)
    assert not any("->" in line for line in outcomes[1].log)  # already open
    db.session.refresh(ticket)
    assert ticket.state.name == "open" and len(ticket.articles) == 3


def test_one_bad_message_in_a_batch_fails_alone(app_ctx, monkeypatch):
    """A batch INSERT refused because of one message is retried message by message."""
    real_insert_articles = tickets_module.insert_articles

    def refuse_poison(conn, articles):
        if any(a.row["subject"] == "poison" for a in articles):
            raise ValueError("refused by the database")
        return real_insert_articles(conn, articles)

    monkeypatch.setattr(pipeline, "insert_articles", refuse_poison)
    mails = [make_mail(subject=s) for s in ("one", "poison", "three")] + [b""]
    outcomes = process_batch(build_context(make_account()), mails)
    db.session.commit()
    assert [o.kind for o in outcomes] == ["new_ticket", "failed", "new_ticket", "failed"]
    assert "refused by the database" in outcomes[1].error
    assert sorted(t.title for t in db.session.query(Ticket)) == ["one", "three"]
    assert db.session.query(FailedMail).count() == 2
    assert db.session.query(RawMail).count() == 4


# --------------------------------------------------------------------------- speed


def test_pipeline_speed_on_1000_messages(app_ctx, capsys):
    """The whole pipeline on a realistic corpus, committing every 100 like the fetch loop."""
    mails = list(realistic_corpus(1000))
    account = make_account()
    started = time.perf_counter()
    ctx = build_context(account)
    kinds: dict[str, int] = {}
    for i, raw in enumerate(mails, 1):
        outcome = process_message(ctx, raw)
        kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        if i % 100 == 0:
            db.session.commit()
    db.session.commit()
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\npipeline: {len(mails)} messages in {elapsed:.2f} s = "
            f"{len(mails) / elapsed:.0f} msg/s ({elapsed / len(mails) * 1000:.2f} ms each) {kinds}"
        )
    assert sum(kinds.values()) == 1000
    assert db.session.query(RawMail).count() == 1000 - kinds.get("ignored", 0)


def in_process_parse(fn):
    """A stand-in for parse_many_with_limit that calls fn in this process (so a test can
    make parsing fail; the real worker process cannot see a monkeypatch)."""

    def fake(raws, limits=None, stall_for_tests=False):
        for raw in raws:
            try:
                yield fn(raw)
            except Exception as exc:
                yield exc

    return fake
