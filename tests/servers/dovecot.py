"""A private, unprivileged Dovecot (IMAP + POP3, TLS, XOAUTH2) for tests."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from tests.servers.tls import make_test_pki

DOVECOT_BINARY = "/usr/sbin/dovecot"
# Debian's "mail" user: Dovecot refuses to give mail to uid 0.
MAIL_UID = 8
MAIL_GID = 8
# A password that no PLAIN/LOGIN attempt can match: for OAuth2-only users.
IMPOSSIBLE_PASSWORD = "{CRYPT}!"

_CONFIG = """\
# Throwaway Dovecot for Postmaster's tests; everything lives in {root}.
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3
shutdown_clients = yes

ssl = yes
ssl_cert = <{cert_file}
ssl_key = <{key_file}
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
# Wrong-password tests must be fast.
auth_failure_delay = 0
auth_verbose = yes
auth_debug = {debug}
mail_debug = {debug}

first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
default_vsz_limit = 1G
default_process_limit = 200
# Parallel-login tests open many sessions for one user from one IP.
mail_max_userip_connections = 200

namespace inbox {{
  inbox = yes
}}

passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
# App-only tokens name no user: the identity provider's grant table decides (as Exchange
# does with mailbox permissions); see app_grant_check.py.
passdb {{
  driver = checkpassword
  mechanisms = xoauth2 oauthbearer
  args = {root}/app_grant_check.py
}}
passdb {{
  driver = passwd-file
  # Without this, an XOAUTH2 token would also be tried as a password.
  mechanisms = plain login
  # One passwd-file per user: Dovecot re-reads a changed passwd-file at most once
  # a second, so appending to one shared file would lose users added in a hurry.
  args = scheme=PLAIN username_format=%Lu {root}/users/%Lu
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {root}/users/%Lu
}}

# The auth process cannot reach anvil's penalty socket, so it turns the per-IP
# failed-login penalty off (every test connects from 127.0.0.1).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

service imap-login {{
{login_mode}
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
{login_mode}
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
    ssl = yes
  }}
}}
"""

_OAUTH2_CONFIG = """\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={keydir}/
username_attribute = upn
"""


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # If the test run is killed (or its pipe closes), Dovecot must not outlive it;
    # Dovecot's own children exit when their master dies.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def live_processes_in_group(pgid: int) -> list[int]:
    """Return the pids of processes in a process group that are not zombies."""
    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Zombies are already dead: whoever is init reaps them.
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(entry))
    return live


def _folder_dir(maildir: Path, folder: str) -> Path:
    # Maildir++ layout: INBOX is the Maildir itself, "A/B" lives in ".A.B".
    if folder.upper() == "INBOX":
        return maildir
    return maildir / ("." + folder.replace("/", "."))


class Dovecot:
    """A private Dovecot listening on free loopback ports with its own config and state."""

    host = "127.0.0.1"

    def __init__(
        self, debug: bool = False, binary: str = DOVECOT_BINARY, shared_login: bool = False
    ) -> None:
        self.binary = binary
        self.debug = debug
        # One login process for all connections (Dovecot's "high-performance mode"): it keeps
        # one TLS session ticket key, so clients can resume TLS sessions. The default starts a
        # login process per connection, each with its own key: resumption never succeeds.
        self.shared_login = shared_login
        self.imap_port = 0
        self.imaps_port = 0
        self.pop3_port = 0
        self.pop3s_port = 0
        self.root: Path | None = None
        self.ca_file = ""
        self.config_file = ""
        self.keydir = Path()
        self._process: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count()

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Write a fresh config, start Dovecot and wait until all four ports accept."""
        if os.geteuid() != 0:
            raise RuntimeError("the test Dovecot runs as root (it hands mail to uid 8)")
        root = Path(tempfile.mkdtemp(prefix="postmaster-dovecot-"))
        # Login (dovenull) and mail (uid 8) processes must traverse the tree.
        root.chmod(0o755)
        self.root = root
        self.ca_file, cert_file, key_file = make_test_pki(root / "tls")
        self.keydir = root / "oauth2-keys"
        self.keydir.mkdir()
        (root / "home").mkdir(mode=0o755)
        (root / "users").mkdir(mode=0o755)
        (root / "dovecot-oauth2.conf.ext").write_text(_OAUTH2_CONFIG.format(keydir=self.keydir))
        check = root / "app_grant_check.py"
        shutil.copyfile(Path(__file__).with_name("app_grant_check.py"), check)
        check.chmod(0o755)

        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = self._four_ports()
        self.config_file = str(root / "dovecot.conf")
        Path(self.config_file).write_text(
            _CONFIG.format(
                root=root,
                instance=f"postmaster-test-{os.getpid()}-{root.name[-8:]}",
                cert_file=cert_file,
                key_file=key_file,
                debug="yes" if self.debug else "no",
                uid=MAIL_UID,
                gid=MAIL_GID,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                pop3_port=self.pop3_port,
                pop3s_port=self.pop3s_port,
                login_mode="  service_count = 0\n  process_limit = 1" if self.shared_login else "",
            )
        )
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        # Own session: stop() can kill the whole process group, never anything else.
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", self.config_file],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_for_ports(timeout)

    def restart(self, timeout: float = 10.0) -> None:
        """Kill Dovecot and every session (as a crash or a restart does), then start it again
        on the same ports with the same users and mail."""
        self._kill()
        self._launch(timeout)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # A graceful SIGTERM takes Dovecot's master seconds; nothing here needs to
        # survive, so kill the process group that start() created (never anything else).
        # start_new_session made the master a group leader: its pid is the group id.
        pgid = process.pid
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while live_processes_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.stdout is not None:
            process.stdout.close()

    def doveadm(self, *args: str) -> str:
        """Run doveadm against this instance; returns its output."""
        result = subprocess.run(
            ["doveadm", "-c", self.config_file, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def imap_sessions(self, username: str) -> int:
        """How many IMAP connections of this user are logged in now (`doveadm who`)."""
        count = 0
        for line in self.doveadm("who", "-1", username.lower()).splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[0] == username.lower() and fields[1] == "imap":
                count += 1
        return count

    def kick(self, username: str) -> None:
        """Close every connection of the user from the server side (`doveadm kick`)."""
        self.doveadm("kick", username.lower())

    def _four_ports(self) -> tuple[int, int, int, int]:
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        a, b, c, d = sorted(ports)
        return a, b, c, d

    def _wait_for_ports(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        for port in (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port):
            while True:
                if self._process.poll() is not None:
                    output = self._process.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
                    self.stop()
                    raise RuntimeError(f"dovecot exited at start:\n{output}\n{self.log_text()}")
                try:
                    socket.create_connection((self.host, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log = self.log_text()
                        self.stop()
                        raise RuntimeError(f"dovecot port {port} did not open:\n{log}") from None
                    time.sleep(0.02)

    def stop(self) -> None:
        """Stop Dovecot and every process it started; remove its files."""
        self._kill()
        if self.root is not None and os.environ.get("POSTMASTER_KEEP_DOVECOT") != "1":
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """Return Dovecot's log so far (for failing tests)."""
        if self.root is None:
            return ""
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- users and mail ----------------------------------------------------

    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("Dovecot is not started")
        return self.root

    def home(self, username: str) -> Path:
        """Return the user's home directory."""
        return self._root() / "home" / username.lower()

    def maildir(self, username: str, folder: str = "INBOX") -> Path:
        """Return the Maildir directory of one folder."""
        return _folder_dir(self.home(username) / "Maildir", folder)

    def add_user(self, username: str, password: str | None = None) -> None:
        """Add a user with an empty INBOX; without password the user can only use OAuth2."""
        if not re.fullmatch(r"[A-Za-z0-9._@+-]+", username):
            raise ValueError(f"unsupported test username: {username!r}")
        if password is not None and re.search(r"[:\r\n]", password):
            raise ValueError("test passwords cannot contain ':' or line breaks (passwd-file)")
        secret = IMPOSSIBLE_PASSWORD if password is None else "{PLAIN}" + password
        home = self.home(username)
        home.mkdir(mode=0o700)
        os.chown(home, MAIL_UID, MAIL_GID)
        self.create_folder(username, "INBOX")
        line = f"{username.lower()}:{secret}:{MAIL_UID}:{MAIL_GID}::{home}::\n"
        (self._root() / "users" / username.lower()).write_text(line)

    def create_folder(self, username: str, folder: str) -> None:
        """Create a Maildir folder (and INBOX's Maildir) owned by the mail user."""
        maildir = self.home(username) / "Maildir"
        paths = [maildir, _folder_dir(maildir, folder)]
        for path in paths:
            for sub in ("", "cur", "new", "tmp"):
                target = path / sub
                if not target.exists():
                    target.mkdir(mode=0o700)
                    os.chown(target, MAIL_UID, MAIL_GID)
        if folder.upper() != "INBOX":
            marker = paths[1] / "maildirfolder"
            marker.touch()
            os.chown(marker, MAIL_UID, MAIL_GID)

    def deliver(self, username: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put one message into a folder's new/ (Dovecot indexes it on the next SELECT)."""
        self.deliver_many(username, [raw], folder)

    def deliver_many(self, username: str, raws: Iterable[bytes], folder: str = "INBOX") -> None:
        """Write many messages straight into new/; fast enough for 10,000+ messages."""
        directory = self.maildir(username, folder)
        if not directory.exists():
            self.create_folder(username, folder)
        new = directory / "new"
        tmp = directory / "tmp"
        stamp = int(time.time())
        pid = os.getpid()
        for raw in raws:
            # Unique Maildir name; written in tmp/ and renamed, as a real MDA does.
            name = f"{stamp}.M{next(self._counter)}P{pid}.postmaster-test"
            path = tmp / name
            with open(path, "wb") as handle:
                handle.write(raw)
            os.chown(path, MAIL_UID, MAIL_GID)
            os.rename(path, new / name)

    def _message_files(self, username: str, folder: str) -> list[Path]:
        directory = self.maildir(username, folder)
        files: list[Path] = []
        for sub in ("new", "cur"):
            for path in (directory / sub).iterdir():
                flags = path.name.partition(":2,")[2]
                # "T" (trashed) is \Deleted: gone for the client once expunged.
                if "T" not in flags:
                    files.append(path)
        # Names start with the delivery time and a counter: roughly delivery order.
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def message_count(self, username: str, folder: str = "INBOX") -> int:
        """Count the folder's messages that are not flagged \\Deleted."""
        return len(self._message_files(username, folder))

    def messages(self, username: str, folder: str = "INBOX") -> list[bytes]:
        """Return the raw messages of a folder (not flagged \\Deleted)."""
        return [path.read_bytes() for path in self._message_files(username, folder)]

    def flags(self, username: str, folder: str = "INBOX") -> list[str]:
        """Return the Maildir flag letters of each message ("S" = \\Seen, "T" = \\Deleted)."""
        directory = self.maildir(username, folder)
        result = []
        for sub in ("new", "cur"):
            for path in sorted((directory / sub).iterdir()):
                result.append(path.name.partition(":2,")[2])
        return result

    # -- OAuth2 --------------------------------------------------------------

    def trust_app_tokens(self, check_url: str) -> None:
        """Let app-only tokens log in as the mailboxes the identity provider at check_url
        grants (its app-mailbox check endpoint)."""
        path = self._root() / "app-check-url"
        path.write_text(check_url + "\n")
        path.chmod(0o644)

    def trust_jwt_key(self, kid: str, public_key_pem: str, azp: str = "default") -> None:
        """Let Dovecot accept RS256 JWTs signed by this key (id kid, client azp)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]+", kid) or not re.fullmatch(r"[A-Za-z0-9._-]+", azp):
            raise ValueError("kid and azp must be plain file names in tests")
        directory = self.keydir / azp / "RS256"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / kid).write_text(public_key_pem)
