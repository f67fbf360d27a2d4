"""Mail Account Management screens: list, add, edit, delete, and the shared validation."""

from __future__ import annotations

import re

import pytest

from webapp.extensions import db
from webapp.mail_accounts.service import create_mail_account, validate_mail_account_input
from webapp.mail_accounts.validators import PASSWORD_AGAIN, MailAccountInput
from webapp.models import FetchRun, MailAccount, OAuth2Profile, OAuth2Token, Queue

SECRET = "Zebra-Quokka-7731-secret"


@pytest.fixture(autouse=True)
def _in_app_context(app_ctx):
    """Every test looks at the database; requests reuse this app context."""


def form_data(**overrides) -> dict:
    data = {
        "type": "IMAPS",
        "username": "support@example.com",
        "password": SECRET,
        "host": "imap.example.com",
        "port": "",
        "folder": "",
        "trusted": "0",
        "dispatch": "to",
        "queue_id": "",
        "validity": "valid",
        "comment": "",
        "verify_tls": "y",
        "after_fetch": "delete",
        "move_folder": "",
        "fetch_interval_minutes": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def add_account(client, **overrides) -> MailAccount:
    response = client.post("/mail-accounts/add", data=form_data(**overrides))
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.query(MailAccount).order_by(MailAccount.id.desc()).first()


def queue_id(name: str) -> int:
    return db.session.query(Queue).filter_by(name=name).one().id


def errors_of(data: MailAccountInput, account=None) -> dict[str, str]:
    return validate_mail_account_input(data, account)


def valid_input(**overrides) -> MailAccountInput:
    values = dict(type="IMAPS", username="u@example.com", password=SECRET, host="mail.example.com")
    values.update(overrides)
    return MailAccountInput(**values)


# --- validation (the same function the CLI uses) ---


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": ""}, "type"),
        ({"type": "SMTP"}, "type"),
        ({"username": "  "}, "username"),
        ({"password": ""}, "password"),
        ({"host": ""}, "host"),
        ({"host": "imaps://mail.example.com"}, "host"),
        ({"host": "mail example.com"}, "host"),
        ({"host": "-bad-.example.com"}, "host"),
        ({"port": "0"}, "port"),
        ({"port": "70000"}, "port"),
        ({"port": "abc"}, "port"),
        ({"host": "mail.example.com:99999"}, "port"),
        ({"host": "mail.example.com:993", "port": "995"}, "port"),
        ({"dispatch": "queue"}, "queue_id"),
        ({"dispatch": "queue", "queue_id": "9999"}, "queue_id"),
        ({"dispatch": "sideways"}, "dispatch"),
        ({"validity": "maybe"}, "validity"),
        ({"after_fetch": "burn"}, "after_fetch"),
        ({"after_fetch": "move"}, "move_folder"),
        ({"after_fetch": "move", "move_folder": "INBOX"}, "move_folder"),
        ({"after_fetch": "move", "folder": "Support", "move_folder": "Support"}, "move_folder"),
        ({"type": "POP3S", "after_fetch": "move", "move_folder": "Done"}, "after_fetch"),
        ({"fetch_interval_minutes": "0"}, "fetch_interval_minutes"),
        ({"fetch_interval_minutes": "soon"}, "fetch_interval_minutes"),
        ({"type": "IMAPOAuth2", "password": ""}, "oauth2_profile_id"),
    ],
)
def test_validation_rejects(app_ctx, overrides, field):
    errors = errors_of(valid_input(**overrides))
    assert field in errors, errors
    assert SECRET not in " ".join(errors.values())


def test_validation_accepts_and_normalizes(app_ctx):
    assert errors_of(valid_input()) == {}
    assert errors_of(valid_input(host="192.0.2.10")) == {}
    assert errors_of(valid_input(host="[2001:db8::1]:993")) == {}
    assert errors_of(valid_input(dispatch="queue", queue_id=queue_id("Misc"))) == {}
    account = create_mail_account(
        valid_input(host="Mail.Example.com:10993", type="POP3S", folder="Ignored"), "tester"
    )
    assert (account.host, account.port, account.folder) == ("mail.example.com", 10993, None)
    assert account.created_by == account.changed_by == "tester"


def test_queue_is_dropped_when_dispatching_by_to_field(app_ctx):
    account = create_mail_account(valid_input(dispatch="to", queue_id=queue_id("Misc")), "t")
    assert account.queue_id is None


def test_oauth2_type_needs_no_password(app_ctx):
    profile = OAuth2Profile(name="M365", provider="MicrosoftAzure", client_id="c", tenant_id="t")
    db.session.add(profile)
    db.session.commit()
    data = valid_input(type="IMAPOAuth2", password="", host="", oauth2_profile_id=profile.id)
    assert errors_of(data) == {}
    account = create_mail_account(data, "t")
    assert account.password is None
    assert account.host == "outlook.office365.com"


def test_duplicate_mailbox_is_refused(app_ctx):
    create_mail_account(valid_input(), "t")
    assert "username" in errors_of(valid_input(type="IMAP"))
    assert errors_of(valid_input(type="POP3")) == {}


# --- screens ---


def test_empty_list_points_to_add(admin_client):
    text = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "No mail accounts yet" in text
    assert 'href="/mail-accounts/add"' in text


def test_add_shows_error_next_to_each_required_field(admin_client):
    response = admin_client.post(
        "/mail-accounts/add",
        data=form_data(type="", username="", password="", host="", dispatch="queue"),
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    for field_id in ("type", "username", "password", "host", "queue_id"):
        start = text.index(f'id="field-{field_id}"')
        block = text[start : text.index("</div>", start)]
        assert "has-error" in text[start - 60 : start] or 'class="error"' in block, field_id
    assert db.session.query(MailAccount).count() == 0


def test_add_and_list_never_show_the_password(admin_client):
    account = add_account(admin_client, host="imap.example.com:10993", comment="A" * 80)
    assert account.password == SECRET
    assert account.port == 10993
    assert account.created_by == "admin"
    listing = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "imap.example.com:10993 / support@example.com" in listing
    assert f'title="{"A" * 80}"' in listing  # full comment on hover
    edit = admin_client.get(f"/mail-accounts/{account.id}").get_data(as_text=True)
    assert 'name="password" type="password" value=""' in edit
    for page in (listing, edit):
        assert SECRET not in page


def test_edit_keeps_password_when_left_empty(admin_client):
    account = add_account(admin_client)
    response = admin_client.post(
        f"/mail-accounts/{account.id}", data=form_data(password="", comment="changed")
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/mail-accounts/{account.id}")
    db.session.refresh(account)
    assert account.password == SECRET and account.comment == "changed"


def test_save_and_finish_returns_to_list(admin_client):
    account = add_account(admin_client)
    response = admin_client.post(
        f"/mail-accounts/{account.id}", data=form_data(password="", submit_finish="1")
    )
    assert response.headers["Location"].endswith("/mail-accounts/")


@pytest.mark.parametrize(
    "change", [{"host": "evil.example.net"}, {"port": "1993"}, {"type": "IMAPTLS"}]
)
def test_changing_host_port_or_type_requires_the_password_again(admin_client, change):
    account = add_account(admin_client)
    response = admin_client.post(
        f"/mail-accounts/{account.id}", data=form_data(password="", **change)
    )
    assert response.status_code == 200
    assert PASSWORD_AGAIN in response.get_data(as_text=True)
    db.session.refresh(account)
    assert account.host == "imap.example.com" and account.type == "IMAPS"
    ok = admin_client.post(
        f"/mail-accounts/{account.id}", data=form_data(password="new-one", **change)
    )
    assert ok.status_code == 302


def test_explicit_default_port_is_not_a_port_change(admin_client):
    account = add_account(admin_client)
    response = admin_client.post(
        f"/mail-accounts/{account.id}", data=form_data(password="", port="993")
    )
    assert response.status_code == 302


def test_dispatch_by_queue(admin_client):
    account = add_account(admin_client, dispatch="queue", queue_id=str(queue_id("Misc")))
    assert account.queue.name == "Misc"


def test_invalid_accounts_are_listed_greyed_out_and_can_be_hidden(admin_client):
    add_account(admin_client, username="alpha@example.com")
    add_account(admin_client, username="beta@example.com", validity="invalid")
    add_account(admin_client, username="gamma@example.com", validity="invalid-temporarily")
    admin_client.get("/mail-accounts/")  # shows the flash messages
    text = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "/ alpha@example.com</a>" in text and "/ beta@example.com</a>" in text
    assert "/ gamma@example.com</a>" in text and text.count('class="invalid"') == 2
    text = admin_client.get("/mail-accounts/?hide_invalid=1").get_data(as_text=True)
    assert "/ alpha@example.com</a>" in text and "/ beta@example.com</a>" not in text
    assert "/ gamma@example.com</a>" not in text and ">Show invalid<" in text
    text = admin_client.get("/mail-accounts/?q=nothing-like-this").get_data(as_text=True)
    assert "No matches found" in text and "alpha@example.com</a>" not in text


def test_list_sorted_by_host_then_username(admin_client):
    add_account(admin_client, host="b.example.com", username="a@example.com")
    add_account(admin_client, host="a.example.com", username="z@example.com")
    add_account(admin_client, host="a.example.com", username="b@example.com")
    admin_client.get("/mail-accounts/")  # shows the flash messages
    text = admin_client.get("/mail-accounts/").get_data(as_text=True)
    rows = ("a.example.com / b@", "a.example.com / z@", "b.example.com / a@")
    order = [text.index(s) for s in rows]
    assert order == sorted(order)


def test_delete_confirmation_page_and_post(admin_client):
    account = add_account(admin_client)
    db.session.add(OAuth2Token(mail_account_id=account.id, refresh_token="rt"))
    db.session.add(FetchRun(mail_account_id=account.id, trigger="cli"))
    db.session.commit()
    page = admin_client.get(f"/mail-accounts/{account.id}/delete").get_data(as_text=True)
    assert "Do you really want to delete this mail account?" in page and "Confirm" in page
    assert db.session.get(MailAccount, account.id) is not None  # GET changes nothing
    response = admin_client.post(f"/mail-accounts/{account.id}/delete")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(MailAccount, account.id) is None
    assert db.session.query(OAuth2Token).count() == 0
    assert db.session.query(FetchRun).count() == 0


def test_unknown_account_is_404(admin_client):
    assert admin_client.get("/mail-accounts/999").status_code == 404
    assert admin_client.post("/mail-accounts/999/delete").status_code == 404


def test_fetch_now_and_test_connection_stubs(admin_client):
    account = add_account(admin_client, host="127.0.0.1", port="1")  # refused at once
    response = admin_client.post(f"/mail-accounts/{account.id}/fetch", follow_redirects=True)
    assert response.status_code == 200
    response = admin_client.post(f"/mail-accounts/{account.id}/test", follow_redirects=True)
    assert response.status_code == 200
    assert SECRET not in response.get_data(as_text=True)


def test_fetch_on_arrival_is_ticked_for_new_accounts_and_can_be_switched_off(admin_client):
    new = admin_client.get("/mail-accounts/add").get_data(as_text=True)
    push_input = re.search(r'<input[^>]*name="push"[^>]*>', new)
    assert push_input and " checked " in push_input.group(0), new
    assert "Fetch on arrival (IMAP IDLE)" in new
    account = add_account(admin_client, push="y")
    assert account.push is True
    edit = admin_client.get(f"/mail-accounts/{account.id}").get_data(as_text=True)
    assert "push: not connected" in edit
    admin_client.post(f"/mail-accounts/{account.id}", data=form_data(password=""))  # unticked
    db.session.refresh(account)
    assert account.push is False
    edit = admin_client.get(f"/mail-accounts/{account.id}").get_data(as_text=True)
    assert "push: switched off" in edit
