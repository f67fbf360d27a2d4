"""The mail account types. Adding a type is one entry in ACCOUNT_TYPES."""

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountType:
    name: str
    label: str
    protocol: str  # "imap" | "pop3"
    security: str  # "plain" | "ssl" (implicit TLS) | "starttls" (STARTTLS / STLS)
    default_port: int
    oauth2: bool = False

    @property
    def is_imap(self) -> bool:
        return self.protocol == "imap"


ACCOUNT_TYPES: dict[str, AccountType] = {
    t.name: t
    for t in [
        AccountType("IMAP", "IMAP", "imap", "plain", 143),
        AccountType("IMAPS", "IMAPS", "imap", "ssl", 993),
        AccountType("IMAPTLS", "IMAPTLS (STARTTLS)", "imap", "starttls", 143),
        AccountType("POP3", "POP3", "pop3", "plain", 110),
        AccountType("POP3S", "POP3S", "pop3", "ssl", 995),
        AccountType("POP3TLS", "POP3TLS (STLS)", "pop3", "starttls", 110),
        AccountType(
            "IMAPOAuth2", "IMAPOAuth2 (Microsoft 365, Google)", "imap", "ssl", 993, oauth2=True
        ),
        AccountType(
            "POP3OAuth2", "POP3OAuth2 (Microsoft 365, Google)", "pop3", "ssl", 995, oauth2=True
        ),
    ]
}

VALIDITIES = ["valid", "invalid", "invalid-temporarily"]
DISPATCH_CHOICES = {"to": "by email To: field", "queue": "by selected Queue"}
AFTER_FETCH_CHOICES = {
    "delete": "Delete from the server",
    "keep": "Mark as read and keep on the server",
    "move": "Move to another folder (IMAP)",
}
OAUTH2_DEFAULT_HOST = "outlook.office365.com"
