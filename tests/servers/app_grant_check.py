#!/usr/bin/python3
"""Dovecot checkpassword program for app-only XOAUTH2 logins (copied into the test Dovecot).

Exchange Online lets an app's token log in as any mailbox its service principal was granted.
Dovecot's oauth2 passdb checks that the token names the login user, so app tokens fall through
to this program, which asks the local identity provider (its grant table) whether the token's
app may open this mailbox. Standard library only: Dovecot runs it with the system Python.
"""

import os
import sys
import urllib.error
import urllib.parse
import urllib.request

URL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app-check-url")


def main() -> int:
    chunks = []
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    parts = b"".join(chunks).split(b"\0")
    if len(parts) < 2 or not os.path.exists(URL_FILE):
        return 1
    with open(URL_FILE) as handle:
        url = handle.read().strip()
    body = urllib.parse.urlencode(
        {
            "user": parts[0].decode("utf-8", "replace"),
            "token": parts[1].decode("ascii", "replace"),
            "service": os.environ.get("SERVICE", ""),
        }
    ).encode("ascii")
    try:
        with urllib.request.urlopen(url, data=body, timeout=5) as answer:
            allowed = answer.status == 200
    except (urllib.error.URLError, OSError):
        return 1
    if not allowed:
        return 1
    os.execv(sys.argv[1], sys.argv[1:])
    return 111


if __name__ == "__main__":
    sys.exit(main())
