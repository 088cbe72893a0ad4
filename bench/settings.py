"""Django settings for the benchmarks: PostgreSQL and Redis on this machine, DEBUG off."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit


def _database(value: str) -> dict[str, Any]:
    """``BENCH_DATABASE``: a database name, or a ``postgresql://user@host:port/name`` URL."""
    config: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "cachestrat_bench",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
    if "://" not in value:
        return {**config, "NAME": value or config["NAME"]}
    url = urlsplit(value)
    parts = {
        "NAME": unquote(url.path.lstrip("/")),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "",
        "PORT": str(url.port or ""),
    }
    return {**config, **{k: v for k, v in parts.items() if v}}


SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_cachestrat",
    "bench.benchapp",
]

DATABASES = {"default": _database(os.environ.get("BENCH_DATABASE", "cachestrat_bench"))}

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1.0, "SOCKET_TIMEOUT": 1.0},
    }
}

CACHESTRAT: dict[str, Any] = {}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
