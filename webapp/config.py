"""Every setting with its default. Layers: these defaults, then instance/config.py, then
environment variables prefixed POSTMASTER_ (see create_app)."""

DEV_SECRET_KEY = "dev-only-secret-key-change-me"


class DefaultConfig:
    # Flask
    SECRET_KEY = DEV_SECRET_KEY
    # Production mode refuses the development secret key and a missing encryption key.
    PRODUCTION = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Set to True when served over https (behind the proxy); see docs/deploy/.
    SESSION_COOKIE_SECURE = False
    PERMANENT_SESSION_LIFETIME = 8 * 3600

    # Database: SQLite in instance/ unless POSTMASTER_SQLALCHEMY_DATABASE_URI says otherwise.
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    # Secrets at rest: comma-separated Fernet keys, newest first. Empty: instance/encryption.key.
    ENCRYPTION_KEYS = ""

    # Sign-in throttling: after this many failures, the user is locked for LOGIN_LOCK_SECONDS.
    LOGIN_MAX_FAILURES = 5
    LOGIN_LOCK_SECONDS = 300

    # Mail fetching
    MAIL_CA_FILE = None  # extra CA bundle (PEM) trusted for IMAP/POP3 TLS besides the system store
    MAIL_TIMEOUT = 60.0  # connect and read timeout in seconds
    FETCH_BATCH_SIZE = 200  # messages per UID FETCH and per database commit
    FETCH_BATCH_BYTES = 20 * 1024 * 1024  # and at most this many bytes of mail per batch
    # Committed messages are deleted (moved, marked) on the server this many at a time, and at
    # the end of the run: each EXPUNGE makes Dovecot rescan the whole maildir, so one per batch
    # makes a 100,000-message mailbox quadratic. Safe at any value: what is committed but not
    # yet deleted is recognised by its dedupe key and only finished by the next run.
    FETCH_DELETE_EVERY = 5000
    # Seconds one message may take to parse. Parsing runs in a worker process that is killed
    # at this limit, and the message is kept as failed mail with the reason.
    PARSE_TIME_LIMIT = 10.0

    # Scheduler
    SCHEDULER_WORKERS = 4
    SCHEDULER_POLL_SECONDS = 5.0
    LEASE_SECONDS = 300  # a fetch lease; extended while a fetch runs, expires when its holder dies
    HEARTBEAT_STALE_SECONDS = 120
    # A scheduler fetch running longer stops at its next batch (the rest comes next run).
    FETCH_DEADLINE_SECONDS = 1800

    # Reverse proxy: number of trusted proxies in front of the app (0 = ignore X-Forwarded-*).
    TRUSTED_PROXIES = 0
    # External URL of the app, e.g. https://helpdesk.example.com/postmaster (OAuth2 redirect URI).
    PUBLIC_URL = None

    # Tests only: enables the crash-injection hook of the fetch path.
    TESTING_FAULTS = False
