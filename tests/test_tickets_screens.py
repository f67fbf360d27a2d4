"""Ticket screens, downloads, the failed mail screen and `flask ticket ...`."""

from __future__ import annotations

import json

import pytest

from tests.mailgen import make_mail
from tests.test_dispatch import make_account, run
from tests.test_pipeline import in_process_parse
from webapp.downloads import content_disposition, safe_content_type
from webapp.extensions import db
from webapp.models import Attachment, FailedMail, Ticket
from webapp.postmaster import pipeline

XSS = "<script>alert('x')</script>"


@pytest.fixture
def ticket_id(app, admin_client):
    """One ticket with hostile subject, body, HTML body and attachments."""
    with app.app_context():
        raw = make_mail(
            frm=f'"{XSS}" <evil@example.test>',
            subject=f"Hi {XSS}",
            body=f"body {XSS}",
            html=f"<p>hello</p>{XSS}<img src=x onerror=alert(1)>",
            message_id="<xss@example.test>",
            attachments=[
                ("page.html", "text/html", b"<script>alert(1)</script>"),
                ("logo.svg", "image/svg+xml", b"<svg onload=alert(1)/>"),
                ("Bericht März.pdf", "application/pdf", b"%PDF-1.4"),
            ],
        )
        return run(make_account(), raw).ticket_id


def test_queue_overview_counts_tickets(app, admin_client, ticket_id):
    page = admin_client.get("/tickets/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Raw" in html and "Misc" in html
    assert 'href="/tickets/queue/' in html
    with app.app_context():
        raw_queue = db.session.get(Ticket, ticket_id).queue_id
    listing = admin_client.get(f"/tickets/queue/{raw_queue}").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).number in listing
    assert XSS not in listing and "&lt;script&gt;" in listing


def test_ticket_page_escapes_script_in_subject_and_body(admin_client, ticket_id):
    html = admin_client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "<script>" not in html
    assert "Hi &lt;script&gt;alert(" in html
    assert "body &lt;script&gt;" in html
    assert "onerror" not in html  # removed by the sanitizer, not just escaped
    # The sanitized HTML lives only inside a sandboxed srcdoc attribute (no allow-scripts).
    assert 'sandbox="allow-same-origin"' in html and "allow-scripts" not in html
    assert 'srcdoc="&lt;p&gt;hello&lt;/p&gt;' in html
    assert "page.html" in html and "Bericht März.pdf" in html


def test_html_attachment_download_is_attachment_and_nosniff(app, admin_client, ticket_id):
    with app.app_context():
        ids = {a.filename: a.id for a in db.session.query(Attachment)}
    for name in ("page.html", "logo.svg"):
        response = admin_client.get(f"/tickets/attachment/{ids[name]}")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
    pdf = admin_client.get(f"/tickets/attachment/{ids['Bericht März.pdf']}")
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.data == b"%PDF-1.4"
    assert "filename*=UTF-8''Bericht%20M%C3%A4rz.pdf" in pdf.headers["Content-Disposition"]
    assert 'filename="Bericht M_rz.pdf"' in pdf.headers["Content-Disposition"]


def test_raw_source_download(app, admin_client, ticket_id):
    with app.app_context():
        article = db.session.get(Ticket, ticket_id).articles[0]
        article_id, raw = article.id, article.raw_mail.content
    response = admin_client.get(f"/tickets/article/{article_id}/raw")
    assert response.data == raw
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert ".eml" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_missing_things_are_404(admin_client, ticket_id):
    assert admin_client.get("/tickets/999999").status_code == 404
    assert admin_client.get("/tickets/attachment/999999").status_code == 404
    assert admin_client.get("/tickets/queue/999999").status_code == 404
    assert admin_client.get("/failed-mail/999999/raw").status_code == 404


def test_screens_need_sign_in(client):
    assert client.get("/tickets/").status_code == 302
    assert client.get("/failed-mail/").status_code == 302


def test_content_disposition_is_safe():
    header = content_disposition('a"b\r\nc.html')
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="a_b_c.html"')
    assert safe_content_type("TEXT/HTML; charset=utf-8") == "application/octet-stream"
    assert safe_content_type("application/xhtml+xml") == "application/octet-stream"
    assert safe_content_type("image/png") == "image/png"


# --------------------------------------------------------------------------- failed mail


@pytest.fixture
def failed_id(app, monkeypatch):
    def boom(raw):
        raise ValueError(f"broken {XSS}")

    with app.app_context():
        monkeypatch.setattr(pipeline, "parse_many_with_limit", in_process_parse(boom))
        raw = make_mail(frm="Carol <carol@example.test>", subject=f"Lost {XSS}")
        failed_id = run(make_account(), raw).failed_mail_id
        monkeypatch.undo()
        return failed_id


def test_failed_mail_list_shows_account_error_from_subject(admin_client, failed_id):
    html = admin_client.get("/failed-mail/").get_data(as_text=True)
    assert f'id="failed-{failed_id}"' in html
    assert "mail.example.test" in html
    assert "Carol &lt;carol@example.test&gt;" in html
    assert "Lost &lt;script&gt;" in html
    assert "ValueError: broken &lt;script&gt;" in html
    assert "<script>" not in html
    assert f'action="/failed-mail/{failed_id}/reprocess"' in html
    assert 'method="post"' in html


def test_failed_mail_reprocess_button(app, admin_client, failed_id):
    response = admin_client.post(f"/failed-mail/{failed_id}/reprocess")
    assert response.status_code == 302
    assert "/tickets/" in response.headers["Location"]
    with app.app_context():
        assert db.session.query(FailedMail).count() == 0
        assert db.session.query(Ticket).one().title == f"Lost {XSS}"


def test_failed_mail_reprocess_is_post_only(admin_client, failed_id):
    assert admin_client.get(f"/failed-mail/{failed_id}/reprocess").status_code == 405


def test_failed_mail_delete_button(app, admin_client, failed_id):
    confirm = admin_client.get(f"/failed-mail/{failed_id}/delete").get_data(as_text=True)
    assert "Delete this mail for good?" in confirm and "Lost &lt;script&gt;" in confirm
    assert "<script>" not in confirm and 'id="confirm-delete"' in confirm
    with app.app_context():
        assert db.session.query(FailedMail).count() == 1  # GET deletes nothing
    response = admin_client.post(f"/failed-mail/{failed_id}/delete")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.query(FailedMail).count() == 0


def test_failed_mail_raw_download(admin_client, failed_id):
    response = admin_client.get(f"/failed-mail/{failed_id}/raw")
    assert b"carol@example.test" in response.data
    assert response.headers["Content-Disposition"].startswith("attachment;")


# --------------------------------------------------------------------------- CLI


def test_ticket_list_json(app, runner):
    with app.app_context():
        account = make_account()
        first = run(account, make_mail(subject="First\tone", message_id="<a@x.test>"))
        run(account, make_mail(subject="Re", message_id="<b@x.test>", in_reply_to="<a@x.test>"))
        run(account, make_mail(subject="Other", message_id="<c@x.test>"))
        number = db.session.get(Ticket, first.ticket_id).number
    result = runner.invoke(args=["ticket", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    row = next(r for r in rows if r["number"] == number)
    assert row["queue"] == "Raw" and row["state"] == "new" and row["priority"] == "3 normal"
    assert row["title"] == "First\tone"
    assert row["message_ids"] == ["<a@x.test>", "<b@x.test>"]

    text = runner.invoke(args=["ticket", "list", "--queue", "Raw"])
    assert text.exit_code == 0
    line = next(x for x in text.output.splitlines() if x.startswith(number))
    assert line.split("\t") == [
        number,
        "Raw",
        "new",
        "3 normal",
        "First one",
        "<a@x.test> <b@x.test>",
    ]

    empty = runner.invoke(args=["ticket", "list", "--queue", "Junk", "--json"])
    assert json.loads(empty.output) == []
    missing = runner.invoke(args=["ticket", "list", "--queue", "Nope"])
    assert missing.exit_code == 2


def test_ticket_failed_and_reprocess_cli(app, runner, failed_id):
    listed = runner.invoke(args=["ticket", "failed", "--json"])
    assert json.loads(listed.output)[0]["id"] == failed_id
    result = runner.invoke(args=["ticket", "reprocess-failed", "--all"])
    assert result.exit_code == 0, result.output
    assert "new_ticket" in result.output
    assert json.loads(runner.invoke(args=["ticket", "failed", "--json"]).output) == []
