"""`flask postmaster-filter ...`: the same validation as the screen; bad input exits 2."""

from __future__ import annotations

import json

from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.models import PostmasterFilter, Queue, Ticket


def cli(runner, *args: str, input: str | bytes | None = None):
    return runner.invoke(args=["postmaster-filter", *args], input=input)


def add_monitoring(runner):
    return cli(
        runner,
        "add",
        "--name",
        "Monitoring",
        "--stop",
        "--match",
        "From=@monitor\\.example\\.test",
        "--match",
        "!X-Loop=.",
        "--set",
        "X-OTOBO-Queue=Alerts",
        "--set",
        "x-otobo-priority=5 very high",
        "--comment",
        "Nagios",
    )


def test_add_list_update_and_delete(runner, app):
    with app.app_context():
        db.session.add(Queue(name="Alerts"))
        db.session.commit()
    added = add_monitoring(runner)
    assert added.exit_code == 0, added.output
    assert added.output.strip().isdigit()

    listing = json.loads(cli(runner, "list", "--json").output)
    assert listing == [
        {
            "name": "Monitoring",
            "stop_after_match": True,
            "match": [
                {"header": "From", "pattern": "@monitor\\.example\\.test", "negate": False},
                {"header": "X-Loop", "pattern": ".", "negate": True},
            ],
            "set": [
                {"header": "X-OTOBO-Queue", "value": "Alerts"},
                {"header": "X-OTOBO-Priority", "value": "5 very high"},
            ],
            "comment": "Nagios",
            "validity": "valid",
        }
    ]
    plain = cli(runner, "list").output
    assert plain.startswith("Monitoring\tvalid\tstop\tFrom=@monitor")

    updated = cli(runner, "update", "Monitoring", "--no-stop", "--set", "X-OTOBO-Queue=Junk")
    assert updated.exit_code == 0, updated.output
    with app.app_context():
        row = db.session.query(PostmasterFilter).one()
        assert (row.stop_after_match, row.changed_by) == (False, "cli")
        assert json.loads(row.actions) == [{"header": "X-OTOBO-Queue", "value": "Junk"}]
        assert len(json.loads(row.conditions)) == 2

    assert cli(runner, "delete", "Monitoring").exit_code == 0
    assert json.loads(cli(runner, "list", "--json").output) == []


def test_bad_input_is_one_line_on_stderr_and_exit_2(runner, app):
    cases = [
        (
            ["add", "--name", "F", "--match", "Subject=(a)\\1", "--set", "X-OTOBO-Queue=Junk"],
            "no backreferences",
        ),
        (
            ["add", "--name", "F", "--match", "Subject", "--set", "X-OTOBO-Queue=Junk"],
            "use HEADER=REGEX",
        ),
        (
            ["add", "--name", "F", "--match", "Subject=x", "--set", "X-OTOBO-Queue=Nowhere"],
            "there is no queue named 'Nowhere'",
        ),
        (["update", "Missing", "--comment", "x"], "no filter named 'Missing'"),
        (["delete", "Missing"], "no filter named 'Missing'"),
        (["test", "Missing"], "no filter named 'Missing'"),
    ]
    for args, message in cases:
        result = cli(runner, *args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    with app.app_context():
        assert db.session.query(PostmasterFilter).count() == 0


def test_test_prints_matches_and_what_would_be_set_and_stores_nothing(runner, app):
    with app.app_context():
        db.session.add(Queue(name="Alerts"))
        db.session.commit()
    assert add_monitoring(runner).exit_code == 0
    raw = make_mail(frm="nagios@monitor.example.test", subject="PROBLEM")

    result = cli(runner, "test", "Monitoring", "--json", input=raw)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "filter": "Monitoring",
        "matched": True,
        "conditions": [
            {
                "header": "From",
                "pattern": "@monitor\\.example\\.test",
                "negate": False,
                "matches": True,
            },
            {"header": "X-Loop", "pattern": ".", "negate": True, "matches": True},
        ],
        "would_set": {"X-OTOBO-Queue": "Alerts", "X-OTOBO-Priority": "5 very high"},
    }
    plain = cli(runner, "test", "Monitoring", input=make_mail()).output
    assert plain.splitlines()[0] == "filter Monitoring: does not match"
    with app.app_context():
        assert db.session.query(Ticket).count() == 0


def test_export_and_import_round_trip(runner, app, tmp_path):
    with app.app_context():
        db.session.add(Queue(name="Alerts"))
        db.session.commit()
    assert add_monitoring(runner).exit_code == 0
    exported = cli(runner, "export").output
    path = tmp_path / "filters.json"
    path.write_text(exported)

    again = cli(runner, "import", str(path))
    assert again.output.strip() == "0 filters created, 1 updated."
    assert cli(runner, "delete", "Monitoring").exit_code == 0
    imported = cli(runner, "import", "-", input=exported)
    assert imported.output.strip() == "1 filters created, 0 updated."
    assert cli(runner, "export").output == exported

    bad = cli(runner, "import", "-", input="{not json")
    assert bad.exit_code == 2 and "Not a JSON file" in bad.stderr
