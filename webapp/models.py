"""Database models. Secrets use EncryptedText; timestamps are naive UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from .account_types import ACCOUNT_TYPES, AccountType
from .crypto import EncryptedText
from .extensions import db
from .states import FetchStatus

if TYPE_CHECKING:
    # db.Model is built at run time (the declarative Base plus Flask-SQLAlchemy's table-name
    # and bind mixins), so mypy cannot use it as a base class; the Base is what it checks.
    from .extensions import Base as Model
else:
    Model = db.Model


def table_of(model: type[Model]) -> Table:
    """The Core table of a model, for batch statements (mypy sees __table__ as a FromClause)."""
    return cast(Table, model.__table__)


def utcnow() -> datetime:
    """Naive UTC now: SQLite has no time zones, so every timestamp is stored as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class AuditMixin:
    """Who created and last changed a row, and when."""

    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    # Set by mark_changed only: leases, tokens and push state are bookkeeping, and "changed
    # at/by" on the screens must stay the admin's last edit.
    changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200))

    def mark_changed(self, actor: str | None) -> None:
        """An admin (or a CLI user) changed this row."""
        self.changed_at = utcnow()
        self.changed_by = actor


class AdminUser(Model):
    __tablename__ = "admin_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    # Stored in the session at sign-in and checked on every request: bumping it (sign-out,
    # new password) ends every session of this admin, copied cookies included.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SignInAttempt(Model):
    """Sign-in attempts per client address (throttling): counted before the password check,
    deleted by a successful sign-in."""

    __tablename__ = "sign_in_attempt"
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime)


class Setting(Model):
    """PostMaster settings edited on the Settings screen (see webapp/settings.py for defaults)."""

    __tablename__ = "setting"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Queue(AuditMixin, Model):
    __tablename__ = "queue"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    validity: Mapped[str] = mapped_column(String(30), default="valid")
    comment: Mapped[str | None] = mapped_column(Text)


class SystemAddress(AuditMixin, Model):
    """An email address linked to a queue: what dispatching by To: field looks up."""

    __tablename__ = "system_address"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)  # stored lowercased
    display_name: Mapped[str | None] = mapped_column(String(200))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"))
    validity: Mapped[str] = mapped_column(String(30), default="valid")
    comment: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[Queue] = relationship()


class OAuth2Profile(AuditMixin, Model):
    __tablename__ = "oauth2_profile"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(50))  # "MicrosoftAzure" | "Google" | "Custom"
    client_id: Mapped[str] = mapped_column(String(200))
    client_secret: Mapped[str | None] = mapped_column(EncryptedText)
    tenant_id: Mapped[str] = mapped_column(String(200))
    authorize_url: Mapped[str | None] = mapped_column(String(500))  # Custom provider only
    token_url: Mapped[str | None] = mapped_column(String(500))  # Custom provider only
    # Custom provider only, optional: the id_token's signature and issuer are then checked.
    jwks_url: Mapped[str | None] = mapped_column(String(500))
    issuer: Mapped[str | None] = mapped_column(String(500))
    validity: Mapped[str] = mapped_column(String(30), default="valid")
    secret_expires_on: Mapped[date | None] = mapped_column(Date)
    comment: Mapped[str | None] = mapped_column(Text)
    # "delegated" (a person's browser consent per account) | "app_only" (client credentials).
    grant: Mapped[str] = mapped_column(String(20), default="delegated", server_default="delegated")
    # "secret" (client_secret) | "certificate" (private_key_jwt signed with private_key).
    credential: Mapped[str] = mapped_column(String(20), default="secret", server_default="secret")
    private_key: Mapped[str | None] = mapped_column(EncryptedText)  # PEM, never shown back
    certificate: Mapped[str | None] = mapped_column(Text)  # PEM, public
    # The app-only access token, shared by every account of the profile and every process.
    app_access_token: Mapped[str | None] = mapped_column(EncryptedText)
    app_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime)


class MailAccount(AuditMixin, Model):
    __tablename__ = "mail_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(30))
    username: Mapped[str] = mapped_column(String(320))
    password: Mapped[str | None] = mapped_column(EncryptedText)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    folder: Mapped[str | None] = mapped_column(String(500))  # IMAP only; empty means INBOX
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)
    dispatch: Mapped[str] = mapped_column(String(10), default="to")  # "to" | "queue"
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id"))
    validity: Mapped[str] = mapped_column(String(30), default="valid")
    comment: Mapped[str | None] = mapped_column(Text)
    verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    after_fetch: Mapped[str] = mapped_column(String(10), default="delete")  # delete|keep|move
    move_folder: Mapped[str | None] = mapped_column(String(500))
    fetch_interval_minutes: Mapped[int | None] = mapped_column(Integer)  # None: the setting
    oauth2_profile_id: Mapped[int | None] = mapped_column(ForeignKey("oauth2_profile.id"))
    shared_mailbox: Mapped[bool] = mapped_column(Boolean, default=False)
    # Fetch on arrival (IMAP IDLE): IMAP types only, used when the server announces IDLE.
    push: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    # Scheduling and the per-account lease (see webapp/postmaster/lease.py).
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    fetch_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_generation: Mapped[int] = mapped_column(Integer, default=0)

    # The push (IDLE) connection: its own lease, held by one scheduler process while it keeps
    # the connection, and its state for the account page (see webapp/postmaster/push.py).
    push_owner: Mapped[str | None] = mapped_column(String(200))
    push_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    push_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    push_state: Mapped[str | None] = mapped_column(String(20))  # a PushState
    push_since: Mapped[datetime | None] = mapped_column(DateTime)
    push_detail: Mapped[str | None] = mapped_column(Text)

    # Last run, for the overview.
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_status: Mapped[str | None] = mapped_column(String(20))  # FetchStatus, not running/busy
    last_message: Mapped[str | None] = mapped_column(Text)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)

    queue: Mapped[Queue | None] = relationship()
    oauth2_profile: Mapped[OAuth2Profile | None] = relationship()
    oauth2_token: Mapped[OAuth2Token | None] = relationship(
        back_populates="account", cascade="all, delete-orphan", uselist=False
    )

    @property
    def account_type(self) -> AccountType:
        return ACCOUNT_TYPES[self.type]

    @property
    def effective_port(self) -> int:
        return self.port or self.account_type.default_port

    @property
    def effective_folder(self) -> str:
        if not self.account_type.is_imap:
            return "INBOX"
        return (self.folder or "").strip() or "INBOX"


class OAuth2Token(Model):
    """The tokens of one OAuth2 mail account, encrypted; deleted with the account."""

    __tablename__ = "oauth2_token"
    mail_account_id: Mapped[int] = mapped_column(
        ForeignKey("mail_account.id", ondelete="CASCADE"), primary_key=True
    )
    refresh_token: Mapped[str | None] = mapped_column(EncryptedText)
    access_token: Mapped[str | None] = mapped_column(EncryptedText)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_refresh_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    linked_by: Mapped[str | None] = mapped_column(String(320))  # who signed in at the provider
    linked_at: Mapped[datetime | None] = mapped_column(DateTime)
    account: Mapped[MailAccount] = relationship(back_populates="oauth2_token")


class OAuth2PendingAuthorization(Model):
    """A consent round trip in progress, keyed by state; the form waits here, not in the cookie."""

    __tablename__ = "oauth2_pending_authorization"
    state: Mapped[str] = mapped_column(String(200), primary_key=True)
    admin_user_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"))
    session_binding: Mapped[str] = mapped_column(String(200))
    code_verifier: Mapped[str] = mapped_column(EncryptedText)
    mail_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("mail_account.id", ondelete="CASCADE")
    )
    form_data: Mapped[str] = mapped_column(EncryptedText)  # JSON of the submitted form
    finish: Mapped[bool] = mapped_column(Boolean, default=False)  # "Save and finish" pressed
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    # What the flow started with, so the callback never re-reads a profile changed meanwhile.
    # NULL only in rows parked before these columns existed: the callback refuses those.
    nonce: Mapped[str | None] = mapped_column(EncryptedText)
    client_id: Mapped[str | None] = mapped_column(String(200))
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    authorize_url: Mapped[str | None] = mapped_column(Text)
    token_url: Mapped[str | None] = mapped_column(Text)
    jwks_url: Mapped[str | None] = mapped_column(Text)  # None: no key set (Custom layouts)
    issuer: Mapped[str | None] = mapped_column(Text)  # None: only the iss/tid shape is checked


class TicketState(Model):
    __tablename__ = "ticket_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type_name: Mapped[str] = mapped_column(String(50))  # new|open|closed|pending reminder|...


class TicketPriority(Model):
    __tablename__ = "ticket_priority"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class TicketCounter(Model):
    """Per-day counter behind OTOBO's date-based ticket numbers."""

    __tablename__ = "ticket_counter"
    day: Mapped[str] = mapped_column(String(8), primary_key=True)  # YYYYMMDD
    last: Mapped[int] = mapped_column(Integer, default=0)


class Ticket(Model):
    __tablename__ = "ticket"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"), index=True)
    state_id: Mapped[int] = mapped_column(ForeignKey("ticket_state.id"))
    priority_id: Mapped[int] = mapped_column(ForeignKey("ticket_priority.id"))
    customer_no: Mapped[str | None] = mapped_column(String(200))
    customer_user: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    queue: Mapped[Queue] = relationship()
    state: Mapped[TicketState] = relationship()
    priority: Mapped[TicketPriority] = relationship()
    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="Article.id", cascade="all, delete-orphan"
    )


class RawMail(Model):
    """A message exactly as received, stored once."""

    __tablename__ = "raw_mail"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Not indexed: nothing looks mail up by it here (the dedupe keys have their own sha256
    # index), and a random-keyed index costs a page write per message at every batch commit.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))


class Article(Model):
    __tablename__ = "article"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    mail_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("mail_account.id", ondelete="SET NULL")
    )
    raw_mail_id: Mapped[int | None] = mapped_column(ForeignKey("raw_mail.id"))
    sender_type: Mapped[str] = mapped_column(String(20), default="customer")
    is_visible_for_customer: Mapped[bool] = mapped_column(Boolean, default=True)
    from_addr: Mapped[str | None] = mapped_column(Text)
    to_addr: Mapped[str | None] = mapped_column(Text)
    cc_addr: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(500))
    references: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    body_text: Mapped[str | None] = deferred(mapped_column(Text))
    body_html: Mapped[str | None] = deferred(mapped_column(Text))  # sanitized
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ticket: Mapped[Ticket] = relationship(back_populates="articles")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="article", cascade="all, delete-orphan"
    )
    raw_mail: Mapped[RawMail | None] = relationship()


class Attachment(Model):
    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str | None] = mapped_column(String(500))
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    article: Mapped[Article] = relationship(back_populates="attachments")


class FailedMail(Model):
    """A message that could not be processed: kept, shown, and reprocessable."""

    __tablename__ = "failed_mail"
    id: Mapped[int] = mapped_column(primary_key=True)
    mail_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("mail_account.id", ondelete="SET NULL")
    )
    raw_mail_id: Mapped[int] = mapped_column(ForeignKey("raw_mail.id"))
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    raw_mail: Mapped[RawMail] = relationship()
    mail_account: Mapped[MailAccount | None] = relationship()


class SeenMessage(Model):
    """Dedupe key of a message taken from a server, committed with its article before delete."""

    __tablename__ = "seen_message"
    __table_args__ = (
        UniqueConstraint("mail_account_id", "host", "folder", "key", name="uq_seen_message_key"),
        Index("ix_seen_message_sha256", "mail_account_id", "sha256"),
        Index("ix_seen_message_finished_at", "finished_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    mail_account_id: Mapped[int] = mapped_column(ForeignKey("mail_account.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(500))
    # "uid:<uidvalidity>:<uid>" (IMAP) or "uidl:<uidl>" (POP3): ledger.dedupe_key.
    key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))  # an OutcomeKind
    article_id: Mapped[int | None] = mapped_column(ForeignKey("article.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)  # deleted/moved on the server


class FolderState(Model):
    """Highest UID taken per account, host and folder: keep mode never selects by \\Seen."""

    __tablename__ = "folder_state"
    mail_account_id: Mapped[int] = mapped_column(
        ForeignKey("mail_account.id", ondelete="CASCADE"), primary_key=True
    )
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    folder: Mapped[str] = mapped_column(String(500), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(Integer)
    highest_uid: Mapped[int] = mapped_column(Integer, default=0)


class OversizedMessage(Model):
    """A message over the size limit, left on the server: logged once, listed on the account
    and on Status until it is gone from the server, under the limit, fetched or dismissed."""

    __tablename__ = "oversized_message"
    __table_args__ = (
        UniqueConstraint("mail_account_id", "host", "folder", "key", name="uq_oversized_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    mail_account_id: Mapped[int] = mapped_column(ForeignKey("mail_account.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(500))
    key: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(Integer)
    from_addr: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)  # its Date header, naive UTC
    first_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Hidden from "needs attention" by an admin; still left on the server.
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # "Fetch it anyway once": the next run takes it whatever the size limit says.
    fetch_once: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class FetchRun(Model):
    """One fetch of one account: OTOBO's communication log."""

    __tablename__ = "fetch_run"
    __table_args__ = (Index("ix_fetch_run_account_started", "mail_account_id", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mail_account_id: Mapped[int] = mapped_column(ForeignKey("mail_account.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(20))  # a FetchTrigger
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_generation: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A FetchStatus: running until the run ends, then ok, warning, error or reauth.
    status: Mapped[str] = mapped_column(String(20), default=FetchStatus.RUNNING)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    new_tickets: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups: Mapped[int] = mapped_column(Integer, default=0)
    ignored: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    oversized: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str | None] = mapped_column(Text)


class SchedulerNode(Model):
    """Heartbeat of one scheduler process."""

    __tablename__ = "scheduler_node"
    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class HostConnectionSlot(Model):
    """One of the MAX_CONNECTIONS_PER_HOST connection slots of a mail host, shared by every
    process (webapp/postmaster/hosts.py). A slot is held while the fetch lease it names is
    live: a holder that dies or is taken over frees it without a cleanup of its own."""

    __tablename__ = "host_connection_slot"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)  # lowercased
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    account_id: Mapped[int | None] = mapped_column(Integer)  # no FK: a deleted account frees it
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_generation: Mapped[int | None] = mapped_column(Integer)


class PostmasterFilter(AuditMixin, Model):
    """A PostMaster filter: conditions on a mail's headers, X-OTOBO-* values to set.

    conditions: JSON [{"header", "pattern", "negate"}]; actions: JSON [{"header", "value"}].
    """

    __tablename__ = "postmaster_filter"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    stop_after_match: Mapped[bool] = mapped_column(Boolean, default=False)
    conditions: Mapped[str] = mapped_column(Text, default="[]")
    actions: Mapped[str] = mapped_column(Text, default="[]")
    comment: Mapped[str | None] = mapped_column(Text)
    validity: Mapped[str] = mapped_column(String(30), default="valid")
