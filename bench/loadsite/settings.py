"""The example project's settings, pointed at the benchmark's PostgreSQL and Redis.

``LOAD_VARIANT`` picks what serves ``u/<username>/``: ``none`` (``Profile.objects``),
``cachestrat`` (the example's own view, ``Profile.cached``) or ``cacheops`` (``objects``
with django-cacheops caching ``get``). ``DATABASE_URL`` and ``REDIS_URL`` are read by the
example's settings; ``LOAD_DB_DELAY_MS`` adds that many milliseconds to each statement.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES, INSTALLED_APPS, REDIS_URL

VARIANTS = ("none", "cachestrat", "cacheops")

LOAD_VARIANT = os.environ.get("LOAD_VARIANT", "cachestrat")
if LOAD_VARIANT not in VARIANTS:
    raise ImproperlyConfigured(f"LOAD_VARIANT={LOAD_VARIANT!r}: expected one of {VARIANTS}")

LOAD_DB_DELAY = float(os.environ.get("LOAD_DB_DELAY_MS", "0")) / 1000

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.loadsite.urls"

# Persistent connections, as a production deployment keeps them (or a pooler does): a new
# connection per request would measure PostgreSQL's connection start-up, not the query.
DATABASES["default"]["CONN_MAX_AGE"] = None

INSTALLED_APPS = [*INSTALLED_APPS, "bench.loadsite.apps.LoadSiteConfig"]

if LOAD_VARIANT == "cacheops":
    # As cacheops' README sets up a model: the app, its Redis, and the ops to cache.
    INSTALLED_APPS.append("cacheops")
    CACHEOPS_REDIS = REDIS_URL
    CACHEOPS = {"accounts.profile": {"ops": "get", "timeout": 3600}}
    # Its keys under one prefix, so the benchmark can remove exactly them afterwards.
    CACHEOPS_PREFIX = "bench.loadsite.settings.cacheops_prefix"


def cacheops_prefix(query: object) -> str:
    return "cacheops:"


# Errors of the served pages go to gunicorn's log (Django sends them only to mail_admins
# when DEBUG is off), where the benchmark points at them when a request fails.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "WARNING"}},
}
