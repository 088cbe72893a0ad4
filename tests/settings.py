"""Settings for the test suite: the real PostgreSQL and Redis on this machine."""

import json
import os

import django

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django_cachestrat",
    "tests.testapp",
    "debug_toolbar",  # tests/observability/test_panels.py; inert while DEBUG is off
]
if django.VERSION >= (6, 1):  # database-level on_delete (DB_CASCADE, DB_SET_NULL)
    INSTALLED_APPS.append("tests.dbcascade")

_DATABASE = {
    "ENGINE": "django.db.backends.postgresql",
    # A Celery worker started by the tests is given the test database's own name.
    "NAME": (
        os.environ.get("CACHESTRAT_TEST_DB_NAME") or os.environ.get("PGDATABASE", "cachestrat")
    ),
    "USER": os.environ.get("PGUSER", "postgres"),
    "HOST": os.environ.get("PGHOST", "127.0.0.1"),
    "PORT": os.environ.get("PGPORT", "5432"),
}
DATABASES = {
    "default": _DATABASE,
    # A second database (tests/topology/test_databases.py): created only for tests that ask for it.
    "other": {**_DATABASE, "NAME": f"{_DATABASE['NAME']}_other"},
    # The default database under another alias (Django's test runner sees the same
    # database twice and opens it once), as a replica is in tests: routers may read through
    # it; CACHESTRAT["REPLICAS"] says whose rows it holds.
    "replica": {**_DATABASE},
}
# Reads and writes go where tests.routers says, and to "default" otherwise.
DATABASE_ROUTERS = ["tests.routers.ContextRouter"]

REDIS_URL = os.environ.get("CACHESTRAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    },
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

CACHESTRAT: dict[str, object] = {
    "MODELS": {"auth.User": {"lookups": ["username"]}},
}
if os.environ.get("CACHESTRAT_TEST_EXTERNAL_INTERVAL"):  # a consumer the tests start
    CACHESTRAT["EXTERNAL_WRITES"] = {
        "INTERVAL": float(os.environ["CACHESTRAT_TEST_EXTERNAL_INTERVAL"])
    }
if os.environ.get("CACHESTRAT_TEST_WRITE_BEHIND"):  # a worker gets the test's own settings
    CACHESTRAT["WRITE_BEHIND"] = json.loads(os.environ["CACHESTRAT_TEST_WRITE_BEHIND"])
if os.environ.get("CACHESTRAT_TEST_METRICS"):  # a gunicorn the tests start
    CACHESTRAT["METRICS"] = True

# Celery (tests/celery_app.py): the broker is a database of the local Redis, and the queue is
# named after the database (the workers a test starts are told its name), so test runs on
# other databases sharing the broker never take each other's tasks.
CELERY_BROKER_URL = "redis://127.0.0.1:6379/" + os.environ.get("CACHESTRAT_TEST_BROKER_DB", "9")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CACHESTRAT_TEST_QUEUE") or "cachestrat-" + str(
    DATABASES["default"]["NAME"]
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "debug_toolbar.middleware.DebugToolbarMiddleware",  # shows nothing while DEBUG is off
]
ROOT_URLCONF = os.environ.get("CACHESTRAT_TEST_URLCONF", "tests.urls")  # asgi_app: its own
INTERNAL_IPS = ["127.0.0.1"]
# Only the cache's panel: the toolbar's SQL panel would wrap every connection's cursor.
DEBUG_TOOLBAR_PANELS = ["django_cachestrat.panels.CachestratPanel"]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
