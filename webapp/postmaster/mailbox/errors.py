"""The MailError family, the translation of library errors into it, and secret masking.

Every message is admin-readable and free of secrets: Masker removes passwords, tokens and
the arguments of LOGIN/PASS/AUTH commands from debug lines and server texts.
"""

from __future__ import annotations

import contextlib
import poplib
import re
import socket
import ssl
from collections.abc import Iterable, Iterator

from imapclient.exceptions import IMAPClientError

from .limits import LimitExceeded
from .settings import MailboxSettings

TLS_HINT = (
    "If the server uses a private CA, set POSTMASTER_MAIL_CA_FILE to its certificate; "
    'otherwise untick "Verify TLS certificate" for this account (less safe).'
)


class MailError(Exception):
    """A mail server problem; str() is an admin-readable message without secrets."""


class MailConnectError(MailError):
    """The server cannot be reached (DNS, refused, timeout)."""


class MailTLSError(MailError):
    """TLS failed: certificate, STARTTLS/STLS missing or failed."""


class MailLoginError(MailError):
    """The server refused the login."""


class MailFolderError(MailError):
    """The folder does not exist (or cannot be used)."""


class MailProtocolError(MailError):
    """The server sent something broken, hostile or unexpected."""


class Masker:
    """Replaces secrets in debug lines and error messages with ***."""

    _patterns = [
        # Only the commands themselves: capability words like AUTH=LOGIN stay readable.
        re.compile(r"(\b[A-Za-z0-9]+ LOGIN) .*"),
        re.compile(r"(^(?:> )?PASS) .*"),
        re.compile(r"(\b(?:AUTHENTICATE|AUTH) [A-Za-z0-9_-]+) .*"),
    ]

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for pattern in self._patterns:
            text = pattern.sub(r"\1 ***", text)
        return text


def server_label(settings: MailboxSettings) -> str:
    """The server as error messages name it: "IMAP host:993 (SSL/TLS)"."""
    mode = {"plain": "without TLS", "ssl": "SSL/TLS", "starttls": "STARTTLS"}[settings.security]
    return f"{settings.protocol.upper()} {settings.host}:{settings.effective_port} ({mode})"


@contextlib.contextmanager
def translate(settings: MailboxSettings, masker: Masker, doing: str) -> Iterator[None]:
    """Turn library and socket exceptions into MailError subclasses with clear messages."""
    where = server_label(settings)
    try:
        yield
    except MailError:
        raise
    except LimitExceeded as e:
        raise MailProtocolError(f"{where}: {doing}: {e}; giving up on this server") from None
    except ssl.SSLCertVerificationError as e:
        raise MailTLSError(
            f"{where}: the server's TLS certificate could not be verified "
            f"({e.verify_message}). {TLS_HINT}"
        ) from None
    except ssl.SSLError as e:
        raise MailTLSError(f"{where}: TLS failed while {doing}: {e.reason or e}") from None
    except socket.gaierror as e:
        raise MailConnectError(
            f"Cannot resolve the host name {settings.host!r}: {e.strerror}"
        ) from None
    except TimeoutError:
        raise MailConnectError(
            f"{where}: no answer within {settings.timeout:g} seconds while {doing}"
        ) from None
    except ConnectionRefusedError:
        raise MailConnectError(
            f"{where}: connection refused (is the port right and the server running?)"
        ) from None
    except OSError as e:
        raise MailConnectError(f"{where}: network error while {doing}: {e}") from None
    except (IMAPClientError, poplib.error_proto, EOFError) as e:
        text = masker(server_text(e))
        raise MailProtocolError(
            f"{where}: unexpected server response while {doing}: {text}"
        ) from None
    except Exception as e:  # broken responses can break any parser: never crash the caller
        text = masker(f"{type(e).__name__}: {e}")[:300]
        raise MailProtocolError(
            f"{where}: could not understand the server while {doing}: {text}"
        ) from None


def server_text(error: BaseException) -> str:
    """The server's own text from a library exception."""
    value = error.args[0] if error.args else str(error)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value)
    for prefix in ("login failed: ", "authenticate failed: "):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    # imapclient formats the server's bytes with repr(): b'[AUTHENTICATIONFAILED] ...'
    quoted = re.fullmatch(r"b(['\"])(.*)\1", value.strip())
    if quoted:
        value = quoted.group(2)
    return value.strip()[:500]
