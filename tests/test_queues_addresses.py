"""Queues and Email Addresses: screens, validation and CLI."""

from __future__ import annotations

import json

import pytest

from webapp.extensions import db
from webapp.models import Queue, SystemAddress


@pytest.fixture(autouse=True)
def _in_app_context(app_ctx):
    """Every test looks at the database; requests reuse this app context."""


def queue(name: str) -> Queue:
    return db.session.query(Queue).filter_by(name=name).one()


def test_first_setup_queues_listed(admin_client):
    text = admin_client.get("/queues/").get_data(as_text=True)
    for name in ("Raw", "Junk", "Misc", "Postmaster"):
        assert f">{name}</a>" in text


def test_add_and_edit_queue(admin_client):
    response = admin_client.post("/queues/add", data={"name": " Sales ", "validity": "valid"})
    assert response.status_code == 302
    sales = queue("Sales")
    assert sales.created_by == "admin"
    response = admin_client.post(
        f"/queues/{sales.id}", data={"name": "Sales", "validity": "invalid", "comment": "old"}
    )
    assert response.status_code == 302
    db.session.refresh(sales)
    assert sales.validity == "invalid" and sales.comment == "old"
    assert 'class="invalid"' in admin_client.get("/queues/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "validity": "valid"}, "Enter the queue name."),
        ({"name": "raw", "validity": "valid"}, "already exists"),
        ({"name": "X", "validity": "gone"}, "Choose one of"),
    ],
)
def test_queue_validation(admin_client, data, message):
    response = admin_client.post("/queues/add", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


def test_default_queue_stays_valid(admin_client):
    raw = queue("Raw")
    response = admin_client.post(f"/queues/{raw.id}", data={"name": "Raw", "validity": "invalid"})
    assert response.status_code == 200
    assert "default queue" in response.get_data(as_text=True)


def test_add_and_edit_address(admin_client):
    misc = queue("Misc")
    response = admin_client.post(
        "/email-addresses/add",
        data={"address": " Support@Example.COM ", "queue_id": str(misc.id), "validity": "valid"},
    )
    assert response.status_code == 302
    row = db.session.query(SystemAddress).one()
    assert row.address == "support@example.com" and row.queue_id == misc.id
    text = admin_client.get(f"/email-addresses/{row.id}").get_data(as_text=True)
    assert f'<option selected value="{misc.id}">' in text
    response = admin_client.post(
        f"/email-addresses/{row.id}",
        data={"address": "support@example.com", "queue_id": str(misc.id), "validity": "invalid"},
    )
    assert response.status_code == 302
    db.session.refresh(row)
    assert row.validity == "invalid"


@pytest.mark.parametrize(
    ("address", "queue_id", "field_message"),
    [
        ("not-an-address", "1", "Enter a valid email address"),
        ("a@b", "1", "Enter a valid email address"),
        ("x@example.com", "", "Choose the queue"),
        ("", "1", "Enter the email address."),
    ],
)
def test_address_validation(admin_client, address, queue_id, field_message):
    response = admin_client.post(
        "/email-addresses/add",
        data={"address": address, "queue_id": queue_id, "validity": "valid"},
    )
    assert response.status_code == 200
    assert field_message in response.get_data(as_text=True)


def test_address_unique_case_insensitive(admin_client):
    data = {"address": "a@example.com", "queue_id": str(queue("Raw").id), "validity": "valid"}
    assert admin_client.post("/email-addresses/add", data=data).status_code == 302
    data["address"] = "A@EXAMPLE.com"
    response = admin_client.post("/email-addresses/add", data=data)
    assert "already exists" in response.get_data(as_text=True)


def test_queue_and_address_cli(runner):
    result = runner.invoke(args=["queue", "add", "Sales", "--comment", "Sales team"])
    assert result.exit_code == 0 and result.output.strip().isdigit()
    result = runner.invoke(args=["queue", "add", "sales"])
    assert result.exit_code == 2 and "already exists" in result.stderr
    names = [q["name"] for q in json.loads(runner.invoke(args=["queue", "list", "--json"]).output)]
    assert "Sales" in names and "Raw" in names

    result = runner.invoke(
        args=["system-address", "add", "Sales@Example.com", "--queue", "Sales", "--name", "Sales"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["system-address", "add", "x@example.com", "--queue", "Nope"])
    assert result.exit_code == 2 and "no such queue" in result.stderr
    result = runner.invoke(args=["system-address", "add", "bad address", "--queue", "Sales"])
    assert result.exit_code == 2
    rows = json.loads(runner.invoke(args=["system-address", "list", "--json"]).output)
    assert rows == [
        {
            "id": rows[0]["id"],
            "address": "sales@example.com",
            "display_name": "Sales",
            "queue": "Sales",
            "validity": "valid",
            "comment": None,
        }
    ]
