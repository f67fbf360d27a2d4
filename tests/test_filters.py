"""PostMaster filters: match fetched mail by its headers and set what happens to it."""

from __future__ import annotations

import io
import json
import time

import pytest

from tests.fetching import add_account
from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.filters.service import (
    FilterInput,
    create_filter,
    export_filters,
    import_filters,
    list_filters,
)
from webapp.models import Article, FetchRun, PostmasterFilter, Queue, Ticket
from webapp.postmaster import filters as engine
from webapp.postmaster.fetch import fetch_account
from webapp.postmaster.filters import Condition
from webapp.postmaster.pipeline import build_context, process_message
from webapp.validation import ValidationError


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


@pytest.fixture
def alerts(app_ctx):
    """An Alerts queue, as most OTOBO sites have."""
    db.session.add(Queue(name="Alerts"))
    db.session.commit()


def add_filter(name: str, matches: list[str], sets: dict[str, str], stop: bool = False) -> None:
    """A filter from 'HEADER=REGEX' / '!HEADER=REGEX' strings and a header -> value dict."""
    conditions = []
    for m in matches:
        header, _, pattern = m.removeprefix("!").partition("=")
        conditions.append(Condition(header, pattern, m.startswith("!")))
    create_filter(FilterInput(name, conditions, list(sets.items()), stop_after_match=stop), "test")


def fetch(dovecot, mail_user, *raws: bytes, trusted: bool = False):
    for raw in raws:
        mail_user.deliver(raw)
    result = fetch_account(add_account(dovecot, mail_user, "IMAPS", trusted=trusted))
    assert result.status == "ok", result.message
    return result


def tickets() -> list[Ticket]:
    return db.session.query(Ticket).order_by(Ticket.id).all()


def fetch_log() -> str:
    return "\n".join(run.log or "" for run in db.session.query(FetchRun))


# --------------------------------------------------------------------------- what filters set


def test_filter_routes_monitoring_mail_to_alerts_with_priority_and_state(
    alerts, dovecot, mail_user
):
    add_filter(
        "Monitoring",
        ["From=^nagios@monitor\\.example\\.test$", "Subject=PROBLEM", "X-Monitor-Host=."],
        {
            "X-OTOBO-Queue": "Alerts",
            "X-OTOBO-Priority": "5 very high",
            "X-OTOBO-State": "open",
        },
    )
    alert = make_mail(
        frm="nagios@monitor.example.test",
        subject="** PROBLEM: disk full **",
        headers={"X-Monitor-Host": "db1"},
    )
    fetch(dovecot, mail_user, alert, make_mail(subject="PROBLEM with my printer"))

    first, second = tickets()
    assert (first.queue.name, first.priority.name, first.state.name) == (
        "Alerts",
        "5 very high",
        "open",
    )
    assert (second.queue.name, second.priority.name, second.state.name) == (
        "Raw",
        "3 normal",
        "new",
    )
    log = fetch_log()
    assert (
        "filter Monitoring matched: set X-OTOBO-Queue=Alerts, X-OTOBO-Priority=5 very high, "
        "X-OTOBO-State=open" in log
    )
    assert log.count("filter Monitoring matched") == 1


def test_filter_ignores_auto_replies_and_the_mail_leaves_the_server(app_ctx, dovecot, mail_user):
    add_filter("Auto-replies", ["Auto-Submitted=^auto-replied"], {"X-OTOBO-Ignore": "yes"})
    result = fetch(
        dovecot,
        mail_user,
        make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
        make_mail(subject="A real question"),
    )
    assert (result.ignored, result.new_tickets) == (1, 1)
    assert [t.title for t in tickets()] == ["A real question"]
    assert dovecot.message_count(mail_user.username) == 0


def test_negated_condition_holds_when_the_header_does_not_match(app_ctx, dovecot, mail_user):
    add_filter("Outsiders", ["!From=@example\\.test>?$"], {"X-OTOBO-Queue": "Junk"})
    fetch(
        dovecot,
        mail_user,
        make_mail(frm="Alice <alice@example.test>", subject="inside"),
        make_mail(frm="Mallory <m@elsewhere.test>", subject="outside"),
    )
    assert [(t.title, t.queue.name) for t in tickets()] == [("inside", "Raw"), ("outside", "Junk")]


def test_a_missing_header_matches_only_a_negated_condition(app_ctx):
    add_filter("Has loop", ["X-Loop=."], {"X-OTOBO-Queue": "Junk"})
    add_filter("No loop", ["!X-Loop=."], {"X-OTOBO-Priority": "4 high"})
    outcome = process_message(build_context(None), make_mail())
    db.session.commit()
    ticket = db.session.get(Ticket, outcome.ticket_id)
    assert (ticket.queue.name, ticket.priority.name) == ("Raw", "4 high")


@pytest.mark.parametrize(
    "stop,queue,priority", [(True, "Misc", "3 normal"), (False, "Junk", "1 very low")]
)
def test_filters_run_in_name_order_and_stop_after_match_ends_the_list(
    app_ctx, dovecot, mail_user, stop, queue, priority
):
    add_filter(
        "b-later", ["Subject=invoice"], {"X-OTOBO-Queue": "Junk", "X-OTOBO-Priority": "1 very low"}
    )
    add_filter("a-first", ["Subject=invoice"], {"X-OTOBO-Queue": "Misc"}, stop=stop)
    fetch(dovecot, mail_user, make_mail(subject="Your invoice"))
    (ticket,) = tickets()
    assert (ticket.queue.name, ticket.priority.name) == (queue, priority)
    log = fetch_log()
    assert "filter a-first matched" in log
    assert ("filter b-later matched" in log) is not stop


def test_filter_sets_the_follow_up_state_of_a_ticket_found_by_its_number(
    app_ctx, dovecot, mail_user
):
    mail_user.deliver(make_mail(subject="Printer broken"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    fetch_account(account_id)
    (ticket,) = tickets()
    add_filter(
        "Thanks close",
        ["Subject=\\[Ticket#\\d+\\]", "Body=^thanks, solved"],
        {"X-OTOBO-FollowUp-State": "closed successful", "X-OTOBO-FollowUp-Priority": "1 very low"},
    )
    mail_user.deliver(make_mail(subject=f"Re: [Ticket#{ticket.number}]", body="Thanks, solved!"))
    result = fetch_account(account_id)
    assert result.follow_ups == 1
    db.session.refresh(ticket)
    assert (ticket.state.name, ticket.priority.name) == ("closed successful", "1 very low")
    assert len(ticket.articles) == 2


def test_filter_on_untrusted_account_applies_but_mail_x_otobo_headers_do_not(
    alerts, dovecot, mail_user
):
    add_filter("To alerts", ["Subject=disk"], {"X-OTOBO-Queue": "Alerts"})
    raw = make_mail(
        subject="disk full",
        headers={"X-OTOBO-Queue": "Postmaster", "X-OTOBO-Priority": "1 very low"},
    )
    fetch(dovecot, mail_user, raw, trusted=False)
    (ticket,) = tickets()
    assert (ticket.queue.name, ticket.priority.name) == ("Alerts", "3 normal")
    log = fetch_log()
    assert "untrusted account: ignored X-OTOBO-Priority, X-OTOBO-Queue" in log
    assert "filter To alerts matched: set X-OTOBO-Queue=Alerts" in log


def test_on_a_trusted_account_filters_apply_after_the_mail_headers(alerts, dovecot, mail_user):
    add_filter("To alerts", ["Subject=disk"], {"X-OTOBO-Queue": "Alerts"})
    raw = make_mail(
        subject="disk full",
        headers={"X-OTOBO-Queue": "Postmaster", "X-OTOBO-Priority": "1 very low"},
    )
    fetch(dovecot, mail_user, raw, trusted=True)
    (ticket,) = tickets()
    assert (ticket.queue.name, ticket.priority.name) == ("Alerts", "1 very low")


def test_what_a_filter_sets_is_checked_like_a_trusted_header(alerts):
    add_filter("To alerts", ["Subject=disk"], {"X-OTOBO-Queue": "Alerts"})
    db.session.query(Queue).filter_by(name="Alerts").one().validity = "invalid"
    db.session.commit()
    outcome = process_message(build_context(None), make_mail(subject="disk full"))
    db.session.commit()
    assert db.session.get(Ticket, outcome.ticket_id).queue.name == "Raw"
    assert "unknown X-OTOBO-Queue 'Alerts', using queue Raw" in outcome.log


def test_invalid_filters_do_not_run(app_ctx):
    add_filter("Off", ["Subject=."], {"X-OTOBO-Queue": "Junk"})
    db.session.query(PostmasterFilter).one().validity = "invalid"
    db.session.commit()
    outcome = process_message(build_context(None), make_mail())
    db.session.commit()
    assert db.session.get(Ticket, outcome.ticket_id).queue.name == "Raw"


# --------------------------------------------------------------------------- safety


def test_bad_regex_is_refused_on_save_with_a_clear_message(app_ctx):
    with pytest.raises(ValidationError) as refused:
        add_filter("Bad", ["Subject=(a)\\1"], {"X-OTOBO-Queue": "Junk"})
    message = refused.value.errors["conditions"]
    assert "Match 1 (Subject): Not a valid regular expression" in message
    assert "no backreferences" in message
    with pytest.raises(ValidationError, match="lookahead"):
        add_filter("Bad", ["Subject=foo(?=bar)"], {"X-OTOBO-Queue": "Junk"})
    assert list_filters() == []


def test_save_refuses_unknown_headers_and_values(app_ctx):
    cases = [
        (["Date=2026"], {"X-OTOBO-Queue": "Junk"}, "not a header a filter can match"),
        (["Subject=x"], {"X-OTOBO-Lock": "lock"}, "not an X-OTOBO header a filter can set"),
        (["Subject=x"], {"X-OTOBO-Queue": "Nowhere"}, "there is no queue named 'Nowhere'"),
        (["Subject=x"], {"X-OTOBO-Ignore": "maybe"}, "use yes or no"),
        ([], {"X-OTOBO-Queue": "Junk"}, "at least one match condition"),
        (["Subject=x"], {}, "at least one X-OTOBO header"),
    ]
    for matches, sets, message in cases:
        with pytest.raises(ValidationError, match=message):
            add_filter("F", matches, sets)


def test_catastrophic_pattern_against_a_long_header_finishes_quickly(app_ctx):
    add_filter(
        "Evil", ["Subject=(a+)+$", "X-Long=(x+x+)+y", "Body=(.*a){20}"], {"X-OTOBO-Queue": "Junk"}
    )
    raw = make_mail(
        subject="a" * 20_000 + "!",
        headers={"X-Long": "x" * 100_000},
        body="a" * 200_000 + "!",
    )
    ctx = build_context(None)
    started = time.monotonic()
    outcome = process_message(ctx, raw)
    elapsed = time.monotonic() - started
    db.session.commit()
    assert outcome.kind == "new_ticket"
    # A backtracking engine needs longer than the universe's age for (a+)+$ on 20,000 a's; RE2
    # takes milliseconds. The bound is generous so a loaded CI machine cannot fail it.
    assert elapsed < 10 * engine.MAX_SECONDS, elapsed


def test_filters_over_the_time_limit_are_skipped_and_the_mail_is_kept(app_ctx, monkeypatch):
    add_filter("Slow", ["Subject=."], {"X-OTOBO-Queue": "Junk"})
    monkeypatch.setattr(engine, "MAX_SECONDS", -1.0)
    outcome = process_message(build_context(None), make_mail())
    db.session.commit()
    assert db.session.get(Ticket, outcome.ticket_id).queue.name == "Raw"
    assert any("over the time limit" in line for line in outcome.log)


def test_a_filter_that_fails_on_a_message_is_logged_and_treated_as_absent(app_ctx, monkeypatch):
    add_filter("a-broken", ["Subject=boom"], {"X-OTOBO-Queue": "Junk"})
    add_filter("b-fine", ["Subject=."], {"X-OTOBO-Priority": "4 high"})
    holds = engine.condition_holds

    def flaky(condition, values):
        if condition.pattern == "boom":
            raise RuntimeError("RE2 out of memory")
        return holds(condition, values)

    def broken_sets(*args):
        raise RuntimeError("set failed")

    monkeypatch.setattr(engine, "_matched_mask", broken_sets)
    monkeypatch.setattr(engine, "condition_holds", flaky)
    outcome = process_message(build_context(None), make_mail(subject="boom"))
    db.session.commit()
    ticket = db.session.get(Ticket, outcome.ticket_id)
    assert (ticket.queue.name, ticket.priority.name) == ("Raw", "4 high")
    assert "filter a-broken failed on this message and is ignored: RE2 out of memory" in outcome.log


def test_a_stored_filter_that_cannot_compile_is_skipped_and_logged(app_ctx):
    add_filter("Good", ["Subject=."], {"X-OTOBO-Priority": "4 high"})
    db.session.add(
        PostmasterFilter(
            name="Edited by hand",
            conditions=json.dumps([{"header": "Subject", "pattern": "(a)\\1"}]),
            actions=json.dumps([{"header": "X-OTOBO-Queue", "value": "Junk"}]),
        )
    )
    db.session.commit()
    outcome = process_message(build_context(None), make_mail())
    db.session.commit()
    ticket = db.session.get(Ticket, outcome.ticket_id)
    assert (ticket.queue.name, ticket.priority.name) == ("Raw", "4 high")
    assert any(line.startswith("filter Edited by hand skipped:") for line in outcome.log)


# --------------------------------------------------------------------------- the screen


def form_post(**fields) -> dict:
    data = {"name": "", "validity": "valid", "comment": ""}
    data.update(fields)
    return data


def test_screen_adds_lists_edits_and_deletes_a_filter(admin_client, alerts):
    response = admin_client.post(
        "/postmaster-filters/add",
        data=form_post(
            name="Monitoring",
            **{
                "conditions-0-header": "From",
                "conditions-0-pattern": "@monitor\\.",
                "conditions-1-header": "x-spam-flag",
                "conditions-1-pattern": "yes",
                "conditions-1-negate": "y",
                "actions-0-header": "X-OTOBO-Queue",
                "actions-0-value": "Alerts",
                "stop_after_match": "y",
            },
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    page = admin_client.get("/postmaster-filters/").get_data(as_text=True)
    assert "Monitoring" in page and "!x-spam-flag=yes" in page and "X-OTOBO-Queue=Alerts" in page
    row = db.session.query(PostmasterFilter).one()
    assert (row.created_by, row.stop_after_match) == ("admin", True)

    edit = admin_client.get(f"/postmaster-filters/{row.id}").get_data(as_text=True)
    assert 'value="@monitor\\."' in edit
    response = admin_client.post(
        f"/postmaster-filters/{row.id}",
        data=form_post(
            name="Monitoring",
            **{
                "conditions-0-header": "From",
                "conditions-0-pattern": "(x)\\1",
                "actions-0-header": "X-OTOBO-Queue",
                "actions-0-value": "Alerts",
            },
        ),
    )
    assert response.status_code == 200
    assert "no backreferences" in response.get_data(as_text=True)

    assert "Confirm" in admin_client.get(f"/postmaster-filters/{row.id}/delete").get_data(
        as_text=True
    )
    assert admin_client.post(f"/postmaster-filters/{row.id}/delete").status_code == 302
    assert db.session.query(PostmasterFilter).count() == 0


def test_test_button_shows_matches_and_what_would_be_set_and_stores_nothing(admin_client, alerts):
    raw = make_mail(frm="nagios@monitor.example.test", subject="PROBLEM <b>disk</b>").decode()
    response = admin_client.post(
        "/postmaster-filters/add",
        data=form_post(
            name="Monitoring",
            test="Test",
            test_message=raw,
            **{
                "conditions-0-header": "From",
                "conditions-0-pattern": "@monitor\\.",
                "conditions-1-header": "Subject",
                "conditions-1-pattern": "<b>",
                "conditions-2-header": "X-Loop",
                "conditions-2-pattern": ".",
                "conditions-2-negate": "y",
                "actions-0-header": "X-OTOBO-Queue",
                "actions-0-value": "Alerts",
            },
        ),
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "The filter matches." in page
    assert "X-OTOBO-Queue: Alerts" in page
    assert "Subject=&lt;b&gt;" in page and "<b>" not in page
    assert db.session.query(PostmasterFilter).count() == 0
    assert db.session.query(Ticket).count() == 0


def test_test_button_runs_on_a_stored_article(admin_client, alerts):
    outcome = process_message(build_context(None), make_mail(subject="PROBLEM"))
    db.session.commit()
    response = admin_client.post(
        "/postmaster-filters/add",
        data=form_post(
            name="x",
            test="Test",
            test_article=str(outcome.article_id),
            **{"conditions-0-header": "Subject", "conditions-0-pattern": "^nothing$"},
        ),
    )
    assert "The filter does not match." in response.get_data(as_text=True)
    assert db.session.query(Article).count() == 1


def test_export_and_import_round_trip_on_the_screen(admin_client, alerts):
    add_filter(
        "Monitoring", ["From=@monitor\\.", "!X-Loop=."], {"X-OTOBO-Queue": "Alerts"}, stop=True
    )
    add_filter("Auto-replies", ["Auto-Submitted=auto"], {"X-OTOBO-Ignore": "yes"})
    response = admin_client.get("/postmaster-filters/export")
    assert "attachment" in response.headers["Content-Disposition"]
    exported = response.get_data()
    before = export_filters()
    db.session.query(PostmasterFilter).delete()
    db.session.commit()

    response = admin_client.post(
        "/postmaster-filters/import",
        data={"file": (io.BytesIO(exported), "filters.json")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "2 filters created, 0 updated" in response.get_data(as_text=True)
    assert export_filters() == before
    assert [f["name"] for f in before["filters"]] == ["Auto-replies", "Monitoring"]


def test_import_is_all_or_nothing(app_ctx):
    doc = {
        "format": "postmaster-filters",
        "version": 1,
        "filters": [
            {
                "name": "ok",
                "match": [{"header": "Subject", "pattern": "x"}],
                "set": [{"header": "X-OTOBO-Queue", "value": "Junk"}],
            },
            {
                "name": "bad",
                "match": [{"header": "Subject", "pattern": "("}],
                "set": [{"header": "X-OTOBO-Queue", "value": "Junk"}],
            },
        ],
    }
    with pytest.raises(ValidationError, match="Filter 'bad'"):
        import_filters(json.dumps(doc), "test")
    assert list_filters() == []


def test_body_conditions_match_the_mail_text_alone_or_negated(app_ctx):
    add_filter("a-body", ["Body=disk (is )?full"], {"X-OTOBO-Priority": "4 high"})
    add_filter("b-no-body", ["Subject=.", "!Body=unsubscribe"], {"X-OTOBO-Queue": "Misc"})
    ctx = build_context(None)
    full = process_message(ctx, make_mail(body="Alert: disk is full on db1"))
    news = process_message(ctx, make_mail(body="Our news. To unsubscribe, reply."))
    db.session.commit()
    first, second = (db.session.get(Ticket, o.ticket_id) for o in (full, news))
    assert (first.priority.name, first.queue.name) == ("4 high", "Misc")
    assert (second.priority.name, second.queue.name) == ("3 normal", "Raw")


def test_header_names_match_whatever_their_case(app_ctx):
    add_filter("a-spam", ["X-Spam-Flag=^yes$"], {"X-OTOBO-Queue": "Junk"})
    add_filter("b-spam", ["x-spam-flag=^yes$", "subject=offer"], {"X-OTOBO-Priority": "1 very low"})
    outcome = process_message(
        build_context(None), make_mail(subject="An OFFER", headers={"X-SPAM-FLAG": "YES"})
    )
    db.session.commit()
    ticket = db.session.get(Ticket, outcome.ticket_id)
    assert (ticket.queue.name, ticket.priority.name) == ("Junk", "1 very low")
