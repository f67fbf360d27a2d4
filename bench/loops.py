"""Baseline fetch loops without a database, run as a child process by bench.fetch.

    python -m bench.loops imap|pop3 --parse pipeline|naive --port P --user U --password W --ca F

Prints one JSON line: {"count", "bytes", "seconds", "parse_errors"}. The loops do what a plain
script does: download, parse, delete; nothing is stored.
- imap: implicit TLS, UID SEARCH ALL, UID FETCH BODY.PEEK[] in batches of --batch, parse each,
  then UID STORE +FLAGS.SILENT (\\Deleted) and UID EXPUNGE for exactly that batch.
- pop3: implicit TLS, LIST, RETR n, parse, DELE n; QUIT commits the deletions.
--parse pipeline calls webapp.postmaster.parse.parse_mail (the pipeline's own parsing: same
policy, same walk over the parts); --parse naive is email.message_from_bytes (compat32) only.
"""

from __future__ import annotations

import argparse
import email
import json
import poplib
import ssl
import sys
import time


def _parser(kind: str):
    if kind == "pipeline":
        from webapp.postmaster.parse import parse_mail

        return parse_mail
    if kind == "naive":
        return email.message_from_bytes
    if kind == "none":
        return lambda raw: None
    raise SystemExit(f"unknown parser {kind!r}")


def imap_loop(args, parse) -> dict:
    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=args.ca)
    count = size = errors = 0
    client = IMAPClient(args.host, args.port, ssl=True, ssl_context=context, timeout=60)
    client.login(args.user, args.password)
    client.select_folder("INBOX")
    uids = sorted(client.search(["ALL"]))
    for start in range(0, len(uids), args.batch):
        chunk = uids[start : start + args.batch]
        data = client.fetch(chunk, ["BODY.PEEK[]", "RFC822.SIZE"])
        for uid in chunk:
            raw = data[uid][b"BODY[]"]
            try:
                parse(raw)
            except Exception:
                errors += 1
            count += 1
            size += len(raw)
        client.delete_messages(chunk, silent=True)
        client.uid_expunge(chunk)
    client.logout()
    return {"count": count, "bytes": size, "parse_errors": errors}


def pop3_loop(args, parse) -> dict:
    context = ssl.create_default_context(cafile=args.ca)
    count = size = errors = 0
    pop = poplib.POP3_SSL(args.host, args.port, context=context, timeout=60)
    poplib._MAXLINE = 1024 * 1024  # real mail has long lines; poplib's 2048 refuses them
    pop.user(args.user)
    pop.pass_(args.password)
    _, listing, _ = pop.list()
    for line in listing:
        number = int(line.split()[0])
        _, lines, _ = pop.retr(number)
        raw = b"\r\n".join(lines) + b"\r\n"
        try:
            parse(raw)
        except Exception:
            errors += 1
        count += 1
        size += len(raw)
        pop.dele(number)
    pop.quit()
    return {"count": count, "bytes": size, "parse_errors": errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("protocol", choices=["imap", "pop3"])
    p.add_argument("--parse", default="pipeline", choices=["pipeline", "naive", "none"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args(argv)
    parse = _parser(args.parse)
    started = time.perf_counter()
    result = imap_loop(args, parse) if args.protocol == "imap" else pop3_loop(args, parse)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
