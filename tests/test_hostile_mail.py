"""Hostile mail cannot stall fetching: every pattern on mail text is linear, and parsing has a
hard time limit (a worker process killed at the limit) whose victims become failed mail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.fetching import REPO, add_account
from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.failed_mail import service as failed_mail_service
from webapp.models import Article, FailedMail
from webapp.postmaster.fetch import fetch_account
from webapp.postmaster.parse import (
    ParseLimits,
    ParserDied,
    ParseTimeout,
    parse_with_limit,
    worker,
)
from webapp.postmaster.parse.worker import STALL_MARKER

# Each case took from 30 s to minutes with the old patterns (they grew quadratically) and
# takes well under a second now. The bound is the production limit, enforced by the worker:
# a quadratic pattern fails the test by timing out; a loaded machine cannot make it flake.
LIMIT = ParseLimits(max_seconds=10.0)
KB = 1024


def _mail(headers: bytes, body: bytes = b"body\r\n") -> bytes:
    return b"Message-ID: <hostile@test>\r\n" + headers + b"\r\n" + body


def _html(body: bytes) -> bytes:
    return _mail(b"Content-Type: text/html; charset=utf-8\r\n", body)


HOSTILE = {
    # RFC 2047 encoded-word starts without an end: each rescanned the rest of the value.
    "subject_open_encoded_words": _mail(
        b"Subject: " + b"=?utf-8?q?a " * (200 * KB // 12) + b"\r\n"
    ),
    "subject_folded_encoded_words": _mail(
        b"Subject: " + b"=?utf-8?b?QQ\r\n " * (200 * KB // 14) + b"x\r\n"
    ),
    "subject_long_charset": _mail(b"Subject: " + b"=?" + b"a" * (200 * KB) + b"\r\n"),
    "from_display_encoded_words": _mail(
        b"From: " + b"=?utf-8?q?x" * (100 * KB // 11) + b" <a@example.com>\r\n"
    ),
    # The address pattern: "@" runs, and spaces that two parts of the pattern could take.
    "from_at_signs_in_brackets": _mail(b"From: <" + b"a@" * (50 * KB) + b"\r\n"),
    "to_at_signs_bare": _mail(b"To: " + b"a@" * (50 * KB) + b" x\r\n"),
    "cc_spaces_before_address": _mail(b"Cc: " + b" " * (200 * KB) + b"a@b x\r\n"),
    "to_many_addresses": _mail(b"To: " + b"a@b.example, " * (200 * KB // 13) + b"\r\n"),
    # Message-ID lists.
    "references_open_brackets": _mail(b"References: " + b"<" * (200 * KB) + b"\r\n"),
    "in_reply_to_encoded_words": _mail(b"In-Reply-To: " + b"=?x?q?<a" * (200 * KB // 8) + b"\r\n"),
    "message_id_brackets": _mail(b"X-Dummy: x\r\nMessage-Id: " + b"<a" * (100 * KB) + b"\r\n"),
    # Bodies.
    "text_body_encoded_words": _mail(b"Subject: s\r\n", b"=?utf-8?q?a " * (400 * KB // 12)),
    "html_open_br_tags": _html(b"<br " * (400 * KB // 4)),
    "html_open_paragraph_tags": _html(b"< /p " * (400 * KB // 5)),
    "html_open_meta_tags": _html(b"<meta " * (400 * KB // 6)),
    "html_blank_lines": _html(b"<br>" + b"\n \t" * (400 * KB // 3) + b"x"),
    "html_spaces": _html(b"<p>" + b" \xc2\xa0" * (400 * KB // 3) + b"x</p>"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_mail_parses_within_the_time_limit(name):
    mail = parse_with_limit(HOSTILE[name], LIMIT)  # ParseTimeout if a pattern is quadratic

    assert mail.message_id == "<hostile@test>" or name == "message_id_brackets"


def test_encoded_words_decode_as_before():
    raw = _mail(
        b"Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_au?=\r\n =?utf-8?b?IGxhaXQ=?= and"
        b" =?iso-8859-1?q?=E9t=E9?= =?utf-8?q?open\r\n"
    )
    assert parse_with_limit(raw, LIMIT).subject == "café au lait and été =?utf-8?q?open"


def test_addresses_are_found_as_before():
    raw = _mail(
        b"From: Ann Example <Ann@Example.com>\r\n"
        b"To: b@example.com, <c@example.com> , D <d@x@example.com>, @@e.example\r\n"
        b'Cc: "Quoted, Name" <q@example.com>, broken@\r\n'
    )
    mail = parse_with_limit(raw, LIMIT)
    assert mail.from_addr == "ann@example.com"
    assert mail.to == ["b@example.com", "c@example.com", "d@x@example.com", "@@e.example"]
    assert mail.cc == ["q@example.com"]


def test_html_breaks_become_lines_as_before():
    raw = _html(b"<p>one<br/>two<BR class='x'>three</p><div>four</div><br <br>five")
    assert parse_with_limit(raw, LIMIT).body_text.split() == ["one", "two", "three", "four", "five"]


def _slow_but_linear_mail() -> bytes:
    # Not a simple address: it goes through the stdlib's getaddresses, which takes more than
    # a second for 240 KB of it on any machine: longer than the tiny limit below.
    return _mail(b"From: <" + b"a@" * (120 * KB) + b"\r\n")


def test_a_parse_longer_than_the_limit_is_killed_and_the_next_parse_works():
    with pytest.raises(ParseTimeout, match=r"parsing took longer than 0\.2 s; kept as failed mail"):
        parse_with_limit(_slow_but_linear_mail(), ParseLimits(max_seconds=0.2))

    assert parse_with_limit(make_mail(subject="next"), LIMIT).subject == "next"


def test_a_parser_process_that_dies_fails_only_its_own_mail():
    parse_with_limit(make_mail(subject="warm-up"), LIMIT)  # an idle worker to watch
    victim = worker._idle[-1].process.pid  # the one the next parse takes
    raw = _mail(b"Subject: s\r\n" + STALL_MARKER[1:] + b"\r\n")
    timer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
    timer.start()
    try:
        with pytest.raises(ParserDied, match="ended while parsing"):
            parse_with_limit(raw, ParseLimits(max_seconds=120.0), stall_for_tests=True)
    finally:
        timer.join()
    assert parse_with_limit(make_mail(subject="after"), LIMIT).subject == "after"


_ORPHAN_SCRIPT = """
import sys
from webapp.postmaster.parse import parse_with_limit, ParseLimits
from webapp.postmaster.parse import worker
parse_with_limit(b"Subject: warm-up\\r\\n\\r\\nx")
child = worker._idle[0].process.pid
print(child, flush=True)
raw = b"Subject: s" + worker.STALL_MARKER + b"\\r\\n\\r\\nx"
parse_with_limit(raw, ParseLimits(max_seconds=2.0), stall_for_tests=True)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


_WRAPPER_SCRIPT = """
from webapp import create_app
from webapp.postmaster.parse.worker import parse_with_limit

if __name__ == "__main__":
    assert callable(create_app)
    print(parse_with_limit(b"Subject: hello\\r\\n\\r\\nbody\\r\\n").subject)
"""


def test_mail_parses_when_the_main_script_imports_the_app(tmp_path):
    # multiprocessing re-runs a main script in every parser process (a package's __main__,
    # such as `python -m scheduler`, it skips): importing the app there must still work.
    script = tmp_path / "wrapper.py"
    script.write_text(_WRAPPER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello"


@pytest.mark.parametrize("how", ["idle", "parsing"])
def test_parser_processes_end_when_their_parent_is_killed(how):
    script = _ORPHAN_SCRIPT if how == "parsing" else _ORPHAN_SCRIPT.rsplit("raw =", 1)[0]
    script += "\nimport time\ntime.sleep(600)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert _alive(child)
        if how == "parsing":
            time.sleep(0.5)  # let the child take the stalling mail (either way it must end)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # idle: EOF on its pipe at once; parsing: its own alarm, a little after the limit.
        assert _wait_for(lambda: not _alive(child), 60), f"parser {child} outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["PARSE_TIME_LIMIT"] = 2.0
    return app_config


def _stalling_mail() -> bytes:
    return make_mail(subject="stall", message_id="<stall@test>").replace(
        b"\r\n", b"\r\n" + STALL_MARKER[1:] + b"\r\n", 1
    )


@pytest.mark.parametrize("account_type", ["IMAPS", "POP3S"])
def test_mail_over_the_time_limit_becomes_failed_mail_and_the_batch_goes_on(
    app_ctx, dovecot, mail_user, account_type
):
    mail_user.deliver(make_mail(subject="before", message_id="<before@test>"))
    mail_user.deliver(_stalling_mail())
    mail_user.deliver(HOSTILE["html_open_br_tags"].replace(b"<hostile@", b"<html@"))
    mail_user.deliver(make_mail(subject="after", message_id="<after@test>"))
    account_id = add_account(dovecot, mail_user, account_type)

    result = fetch_account(account_id)

    assert result.status == "ok", result.message
    assert (result.failed, result.new_tickets) == (1, 3)
    failed = db.session.query(FailedMail).one()
    assert failed.error == "cannot parse: parsing took longer than 2 s; kept as failed mail"
    assert b"<stall@test>" in failed.raw_mail.content
    stored = {m for (m,) in db.session.query(Article.message_id)}
    assert stored == {"<before@test>", "<html@test>", "<after@test>"}
    assert dovecot.message_count(mail_user.username) == 0  # deleted like other failed mail

    mail_user.deliver(make_mail(subject="next run", message_id="<next@test>"))
    again = fetch_account(account_id)
    assert again.status == "ok", again.message
    assert (again.failed, again.new_tickets, again.duplicates) == (0, 1, 0)

    # Reprocessing goes through the same limit: it fails again, with the same reason.
    outcome = failed_mail_service.reprocess(failed)
    assert outcome.error == "cannot parse: parsing took longer than 2 s; kept as failed mail"
    assert db.session.query(FailedMail).count() == 1


@pytest.mark.parametrize("account_type", ["IMAPS", "POP3S"])
def test_a_batch_of_stalling_mail_cannot_outlive_the_lease(
    app, app_ctx, dovecot, mail_user, account_type
):
    # A batch parses for at most a quarter of the lease; what is left waits for the next run,
    # so each run stores something and renews the lease in time: the account moves on.
    app.config["LEASE_SECONDS"] = 8  # parse budget 2 s = PARSE_TIME_LIMIT
    mail_user.deliver(_stalling_mail())
    mail_user.deliver(_stalling_mail().replace(b"<stall@", b"<stall-2@"))
    mail_user.deliver(make_mail(subject="after", message_id="<after@test>"))
    account_id = add_account(dovecot, mail_user, account_type)

    runs = []
    while dovecot.message_count(mail_user.username) and len(runs) < 5:
        result = fetch_account(account_id)
        assert result.status == "ok", result.message
        runs.append((result.failed, result.new_tickets))

    assert runs[0] == (1, 0)  # the first stall used the batch's budget
    assert sum(f for f, _n in runs) == 2 and sum(n for _f, n in runs) == 1
    assert db.session.query(FailedMail).count() == 2
