"""The TLS context for IMAP and POP3: the system store, an extra CA file, or no checks."""

from __future__ import annotations

import ssl

from .errors import MailTLSError
from .settings import MailboxSettings


def tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    """The context for implicit TLS and STARTTLS/STLS, as the account's settings ask."""
    if not settings.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    if settings.ca_file:
        try:
            context.load_verify_locations(settings.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise MailTLSError(
                f"Cannot use the CA file {settings.ca_file} (POSTMASTER_MAIL_CA_FILE): {e}"
            ) from None
    return context
