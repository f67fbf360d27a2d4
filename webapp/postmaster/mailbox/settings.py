"""How to reach one mailbox: MailboxSettings and the protocols' default ports."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORTS = {
    ("imap", False): 143,
    ("imap", True): 993,
    ("pop3", False): 110,
    ("pop3", True): 995,
}


@dataclass(frozen=True)
class MailboxSettings:
    """How to reach and log in to one mailbox."""

    protocol: str  # "imap" | "pop3"
    security: str  # "plain" | "ssl" (implicit TLS) | "starttls"
    host: str
    port: int | None = None
    username: str = ""
    password: str | None = None
    access_token: str | None = None
    oauth_user: str | None = None
    folder: str = "INBOX"
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 60.0
    # Upper bound for one message in memory; protects against hostile servers.
    max_message_size: int = 256 * 1024 * 1024

    @property
    def effective_port(self) -> int:
        """The configured port, or the protocol's default for the security mode."""
        if self.port:
            return self.port
        return DEFAULT_PORTS[(self.protocol, self.security == "ssl")]
