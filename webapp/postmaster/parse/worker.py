"""parse_with_limit: parse_mail in a worker process that is killed at the time limit.

The parser's own time checks run only between MIME parts; a hostile header, a C-level regex
or a stdlib routine can run past them. So the fetcher and the failed-mail reprocessing parse
in a child process: the parent sends the raw bytes over a pipe and waits for the answer
with a deadline. At the deadline the child is killed (SIGKILL) and ParseTimeout is raised,
which the pipeline keeps as failed mail like any other parse error; the next message gets a
fresh child. No code path of the parser can outlive the limit.

Children are started from a forkserver (never a fork of the threaded scheduler or gunicorn
process) that has this module, and so the parser, imported already, without the app (see
parser_preload.py): a new child is ready in milliseconds. Idle children are kept for reuse
by the next fetch. A child never outlives its parent: it exits when its pipe reaches EOF
(the parent closed it or died), and while parsing it carries an alarm a little past the
limit whose default action ends it, in case the parent died in the meantime.
multiprocessing terminates the (daemonic) children at a normal exit.
"""

from __future__ import annotations

import atexit
import multiprocessing
import signal
import threading
from collections.abc import Generator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from .model import DEFAULT_LIMITS, MailParseError, ParsedMail, ParseLimits, timeout_message
from .parser import parse_mail

_CONTEXT = multiprocessing.get_context("forkserver")
# parser_preload (repo root) imports this module without the app: ≈ 60 MB less in the
# forkserver and its workers. Should it not be importable, this module is imported the
# normal way (the forkserver skips a preload that raises ImportError).
_CONTEXT.set_forkserver_preload(["parser_preload", __name__])
_READY_TIMEOUT = 120.0  # a new child's start-up on a very busy machine; not the parse limit
_ALARM_GRACE = 5.0  # the child's own backstop, past the parent's deadline
_MAX_IDLE = 8  # children kept for reuse (one per concurrent fetch)
# Tests only (the pipeline passes it when the app runs with TESTING_FAULTS): a message with
# this header line makes the child hang, so a test can prove the hard limit on any machine.
STALL_MARKER = b"\nX-Postmaster-Fault: stall-parser"


class ParseTimeout(MailParseError):
    """The parse took longer than the limit; its worker process was killed."""


class ParserDied(MailParseError):
    """The worker process ended while parsing (killed, out of memory, crashed)."""


# The raw mail and large attachment contents cross the pipe with send_bytes, not inside a
# pickle: a pickle is one more copy of a 25 MB message on each side.
_BLOB = 64 * 1024


def _serve(conn: Connection) -> None:
    """The child: parse the batches that arrive, one answer per message, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    conn.send(("ready", None))
    while True:
        try:
            count, limits, stall = conn.recv()
            raws = [conn.recv_bytes() for _ in range(count)]
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        raws.reverse()
        while raws:
            if not _answer(conn, raws.pop(), limits, stall):  # pop: parsed mail is freed
                return


def _answer(conn: Connection, raw: bytes, limits: ParseLimits, stall: bool) -> bool:
    """Parse one message and send the result; False when the parent is gone."""
    signal.setitimer(signal.ITIMER_REAL, limits.max_seconds + _ALARM_GRACE)
    answer: tuple[str, Any]
    try:
        if stall and STALL_MARKER in raw.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n"):
            signal.pause()  # until the parent's kill or our own alarm
        answer = ("ok", parse_mail(raw, limits))
    except Exception as exc:
        answer = ("error", exc)
    del raw
    signal.setitimer(signal.ITIMER_REAL, 0)
    blobs: dict[int, bytes] = {}  # attachment index -> content, sent after the mail
    if isinstance(answer[1], ParsedMail):
        for index, attachment in enumerate(answer[1].attachments):
            if len(attachment.content) >= _BLOB:
                blobs[index], attachment.content = attachment.content, b""
    try:
        conn.send((*answer, list(blobs)))
        for blob in blobs.values():
            conn.send_bytes(blob)
    except OSError:
        return False  # the parent is gone
    except Exception:  # the exception does not pickle (nothing was sent): send its text
        error = answer[1]
        conn.send(("error", RuntimeError(f"{type(error).__name__}: {error}"), []))
    return True


class _Worker:
    """One child process and the parent's end of its pipe."""

    def __init__(self) -> None:
        self.conn, child_conn = _CONTEXT.Pipe(duplex=True)
        self.process = _CONTEXT.Process(
            target=_serve, args=(child_conn,), name="postmaster-parse", daemon=True
        )
        self.process.start()
        child_conn.close()  # the child's end lives in the child only: EOF when it dies
        if not self.conn.poll(_READY_TIMEOUT):
            self.kill()
            raise ParserDied("the parser process did not start; try again later")
        try:
            self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise ParserDied("the parser process did not start; try again later") from None

    def send(self, raws: list[bytes], limits: ParseLimits, stall: bool) -> None:
        """Hand the child a batch; it answers each message in order."""
        try:
            self.conn.send((len(raws), limits, stall))
            for raw in raws:
                self.conn.send_bytes(raw)
        except OSError:
            self.kill()
            raise ParserDied("the parser process ended while parsing this mail") from None

    def result(self, limits: ParseLimits) -> ParsedMail | Exception:
        """The next message's parse (or its error); ParseTimeout/ParserDied kill the child.

        The time counts from the previous answer, when the child started on this message."""
        try:
            if not self.conn.poll(limits.max_seconds):
                self.kill()
                raise ParseTimeout(timeout_message(limits.max_seconds))
            status, value, blobs = self.conn.recv()
            for index in blobs:  # the large attachment contents, sent after the mail
                value.attachments[index].content = self.conn.recv_bytes()
        except (EOFError, OSError):
            self.kill()
            raise ParserDied("the parser process ended while parsing this mail") from None
        if status == "ok":
            assert isinstance(value, ParsedMail)
            return value
        assert isinstance(value, Exception)
        return value

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    @property
    def usable(self) -> bool:
        return not self.conn.closed and self.process.is_alive()


_idle: list[_Worker] = []
_lock = threading.Lock()


def _take() -> _Worker:
    with _lock:
        while _idle:
            worker = _idle.pop()
            if worker.usable:
                return worker
            worker.kill()
    return _Worker()


def _give_back(worker: _Worker) -> None:
    if not worker.usable:
        return
    with _lock:
        if len(_idle) < _MAX_IDLE:
            _idle.append(worker)
            return
    worker.kill()


def prestart() -> None:
    """Start a worker in the background (a new process's first one waits for the forkserver
    to import the parser), so that the first parse finds it ready."""

    def start() -> None:
        with _lock:
            if _idle:
                return
        try:
            _give_back(_Worker())
        except ParserDied:
            pass  # the first parse will try again and report it

    threading.Thread(target=start, name="postmaster-parse-prestart", daemon=True).start()


def parse_many_with_limit(
    raws: Sequence[bytes], limits: ParseLimits = DEFAULT_LIMITS, stall_for_tests: bool = False
) -> Generator[ParsedMail | Exception, None, None]:
    """parse_mail of each message, in order, with what it raised as the value, in a worker
    process killed when one message takes longer than limits.max_seconds (that message's
    value is then a ParseTimeout; the rest go on in a new worker).

    The whole batch goes to the worker at once and the answers stream back, so the worker
    parses without waiting for the caller. Closing the iterator early kills the worker.
    Safe to call from several threads at once (each call has its own worker)."""
    todo = [bytes(raw) for raw in raws]
    while todo:
        worker, done, clean = _take(), 0, False
        try:
            try:
                worker.send(todo, limits, stall_for_tests)
                for _raw in todo:
                    value = worker.result(limits)
                    done += 1
                    yield value
                clean = True
            except (ParseTimeout, ParserDied) as exc:
                done += 1
                yield exc
        finally:
            if clean:
                _give_back(worker)
            else:
                worker.kill()  # timed out, died, or answers left unread in its pipe
        todo = todo[done:]


def parse_with_limit(
    raw: bytes, limits: ParseLimits = DEFAULT_LIMITS, stall_for_tests: bool = False
) -> ParsedMail:
    """parse_mail(raw, limits) in a worker process killed after limits.max_seconds.

    Raises what parse_mail raises, ParseTimeout at the limit, ParserDied if the child died."""
    (value,) = parse_many_with_limit([raw], limits, stall_for_tests)
    if isinstance(value, Exception):
        raise value
    return value


@atexit.register
def stop_workers() -> None:
    """End the idle children (they would also end at EOF when this process exits)."""
    with _lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.kill()
