"""Every setting with its default. Layers: these defaults, then instance/config.py, then
environment variables prefixed POSTMASTER_ (see create_app)."""

DEV_SECRET_KEY = "dev-only-secret-key-change-me"


class DefaultConfig:
    # Flask
    SECRET_KEY = DEV_SECRET_KEY
    # Production mode refuses a short or placeholder secret key, a missing encryption key,
    # cookies without Secure and a missing PUBLIC_URL (see check_config in __init__.py).
    PRODUCTION = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Set to True when served over https (behind the proxy); see docs/deploy/.
    SESSION_COOKIE_SECURE = False
    PERMANENT_SESSION_LIFETIME = 8 * 3600

    # Database: SQLite in instance/ unless POSTMASTER_SQLALCHEMY_DATABASE_URI says otherwise.
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    # Secrets at rest: comma-separated Fernet keys, newest first. Empty: the key file. Without
    # a key the web app and the scheduler refuse to start (`flask setup` creates the key file).
    ENCRYPTION_KEYS = ""
    # The key file (one key a line, newest first, mode 0600); empty: instance/encryption.key.
    # Running processes reload it when it changes (`flask keys rotate`, `flask keys retire`).
    ENCRYPTION_KEY_FILE = ""

    # A session ends this many hours after sign-in, however active (besides sign-out, a new
    # password, and PERMANENT_SESSION_LIFETIME seconds without a request).
    SESSION_MAX_AGE_HOURS = 12

    # Sign-in throttling per client address (never a lock of the account: anyone could lock
    # the admin out): LOGIN_FREE_FAILURES attempts freely, then each further attempt from that
    # address waits LOGIN_FIRST_DELAY_SECONDS, doubling per failure, at most
    # LOGIN_MAX_DELAY_SECONDS. A successful sign-in clears the address's count.
    LOGIN_FREE_FAILURES = 5
    LOGIN_FIRST_DELAY_SECONDS = 2
    LOGIN_MAX_DELAY_SECONDS = 900

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

    # Mail connections open at once to one host (lowercased name), in each process: a fetch
    # that finds its host full waits for a slot. Microsoft 365 throttles clients over ~10.
    # 0: no limit.
    MAX_CONNECTIONS_PER_HOST = 10

    # Scheduler
    SCHEDULER_WORKERS = 4
    SCHEDULER_POLL_SECONDS = 5.0
    LEASE_SECONDS = 300  # a fetch lease; extended while a fetch runs, expires when its holder dies
    HEARTBEAT_STALE_SECONDS = 120
    # A scheduler fetch running longer stops at its next batch (the rest comes next run).
    FETCH_DEADLINE_SECONDS = 1800

    # Push (IMAP IDLE), for accounts with "Fetch on arrival": one IDLE connection per account,
    # at most this many per scheduler process (the rest are polled at their interval).
    PUSH_MAX_CONNECTIONS = 200
    # The push connection's lease: renewed at every poll while connected, so a killed process's
    # connection is taken over by another scheduler after this long.
    PUSH_LEASE_SECONDS = 60
    # IDLE is re-issued this often (RFC 2177: at most 29 minutes).
    PUSH_IDLE_SECONDS = 29 * 60
    # New mail is fetched this long after the last EXISTS/RECENT (a burst is one run), but at
    # most PUSH_DEBOUNCE_MAX_SECONDS after the first.
    PUSH_DEBOUNCE_SECONDS = 1.0
    PUSH_DEBOUNCE_MAX_SECONDS = 5.0
    # A failed connection is retried after 2, 4, 8 ... seconds (with jitter), at most this.
    PUSH_BACKOFF_MAX_SECONDS = 300
    # OAuth2: reconnect with a fresh access token this long before the current one expires.
    PUSH_TOKEN_MARGIN_SECONDS = 120
    # A server that did not announce IDLE is asked again after this long (or after an edit).
    PUSH_RECHECK_SECONDS = 3600

    # Reverse proxy: number of trusted proxies in front of the app (0 = ignore X-Forwarded-*).
    TRUSTED_PROXIES = 0
    # External URL of the app, e.g. https://helpdesk.example.com/postmaster (OAuth2 redirect URI).
    PUBLIC_URL = None

    # Tests only (refused in production): Google profiles talk to this base URL instead of
    # Google (its paths /o/oauth2/v2/auth, /token, /oauth2/v3/certs), e.g. the local IdP.
    OAUTH2_GOOGLE_BASE_URL = None

    # Tests only: enables the crash-injection hook of the fetch path.
    TESTING_FAULTS = False
