"""A loopback TCP proxy in front of a test server that counts concurrent connections.

What the server sees from us, without asking the server: every connection a client opens to
the proxy is one to the server. `hold()` keeps new connections waiting (accepted and counted,
not yet forwarded) until `release()`, so a test can fill the limit and look at who waits.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class CountingProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = 0
        self.max_open = 0
        self.total = 0
        self.gate = threading.Event()
        self.gate.set()
        self._closed = False
        self._clients: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def counts(self) -> tuple[int, int, int]:
        """(open now, most open at once, opened in all)."""
        with self.lock:
            return self.open, self.max_open, self.total

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                # A client that closed before this one connected has its end of file queued
                # already, though its pipe thread may not have read it yet: count it closed
                # first, so the count follows the order in which the client did things.
                for other in list(self._clients):
                    if _closed_by_client(other):
                        self._gone(other)
                self._clients.add(client)
                self.open += 1
                self.total += 1
                self.max_open = max(self.max_open, self.open)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _gone(self, client: socket.socket) -> None:
        """Count a client connection closed (once); the caller holds the lock."""
        if client in self._clients:
            self._clients.discard(client)
            self.open -= 1

    def _serve(self, client: socket.socket) -> None:
        try:
            self.gate.wait(120)
            with contextlib.suppress(OSError), socket.create_connection(self.target) as server:
                pipes = [
                    threading.Thread(target=_pipe, args=(client, server), daemon=True),
                    threading.Thread(target=_pipe, args=(server, client), daemon=True),
                ]
                for pipe in pipes:
                    pipe.start()
                for pipe in pipes:
                    pipe.join()
        finally:
            with self.lock:
                self._gone(client)
            client.close()

    def close(self) -> None:
        self._closed = True
        self.gate.set()
        self.listener.close()


def _closed_by_client(client: socket.socket) -> bool:
    """True when the client's end of file is queued (nothing else can follow a LOGOUT)."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until either side closes; then close both directions."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
