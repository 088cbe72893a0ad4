"""A throwaway redis-server on a spare loopback port, started and stopped by pid, and a
proxy that loses its traffic on demand."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from threading import Event


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1 that a test can stop and start again on the same port."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class LossyProxy:
    """A TCP proxy in front of a Redis server that loses script calls on demand.

    ``lose_replies``: a script call (``EVALSHA``) reaches Redis and runs, its reply never
    comes back (the client times out after Redis applied it). ``lose_commands``: a script
    call is swallowed before Redis sees it. Other commands (the connection handshake, plain
    reads) pass either way.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lose_replies = False
        self.lose_commands = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            losing = Event()  # the replies of this connection are being lost
            for pipe in (self._commands, self._replies):
                threading.Thread(target=pipe, args=(client, server, losing), daemon=True).start()

    def _commands(self, client: socket.socket, server: socket.socket, losing: Event) -> None:
        with _closing(client, server):
            while data := client.recv(65536):
                script = b"EVALSHA" in data.upper()
                if script and self.lose_commands:
                    continue
                if script and self.lose_replies:
                    losing.set()
                server.sendall(data)

    def _replies(self, client: socket.socket, server: socket.socket, losing: Event) -> None:
        with _closing(client, server):
            while data := server.recv(65536):
                if not losing.is_set():
                    client.sendall(data)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def _closing(*sockets: socket.socket) -> Iterator[None]:
    """Shut both ends down when one side of a proxied connection ends."""
    try:
        yield
    except OSError:
        pass
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
