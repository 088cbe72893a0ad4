"""Settings for running Django's own test suite with every model in transparent mode.

Used by ``scripts/django_suite.sh`` as ``runtests.py --settings=tests.django_suite_settings``.

``runtests.py`` replaces ``INSTALLED_APPS`` with its ``ALWAYS_INSTALLED_APPS`` list plus the
test modules it runs, so an ``INSTALLED_APPS`` here would be ignored. Django imports this
module lazily, from inside ``runtests.py`` (the ``__main__`` module, in the parent process and
in spawned test workers alike) and before that list is read, so the app is added to it here.
With ``CACHESTRAT_DJANGO_SUITE_BASELINE=1`` the app is left out: same settings, same
databases, no django_cachestrat — the baseline the cached run is compared with.
"""

import atexit
import os
import sys

BASELINE = os.environ.get("CACHESTRAT_DJANGO_SUITE_BASELINE", "") not in ("", "0")

if not BASELINE:
    _runtests = sys.modules.get("__main__")
    _always = getattr(_runtests, "ALWAYS_INSTALLED_APPS", None)
    if not isinstance(_always, list):
        raise RuntimeError(
            "tests.django_suite_settings is meant for Django's tests/runtests.py "
            "(run ./scripts/django_suite.sh)"
        )
    if "django_cachestrat" not in _always:
        _always.append("django_cachestrat")

    _reported: dict[str, int] = {}

    def _report_reads() -> None:
        """Append this process's cache reads since its last report to the file the script
        adds them up from."""
        import json

        from django_cachestrat.stats import _stats

        path = os.environ.get("CACHESTRAT_DJANGO_SUITE_READS")
        if path:
            names = ("hits", "misses", "fills", "queries_saved")
            totals = {n: sum(getattr(s, n) for s in _stats.values()) for n in names}
            delta = {n: totals[n] - _reported.get(n, 0) for n in names}
            _reported.update(totals)
            with open(path, "a") as out:
                out.write(json.dumps(delta) + "\n")

    atexit.register(_report_reads)

    def _init_worker(*args: object, **kwargs: object) -> None:
        """A parallel worker gets clones of the databases under the same aliases: give its
        keys a prefix of its own, as the clones are other databases."""
        _original_init_worker(*args, **kwargs)
        from django.conf import settings as live

        from django_cachestrat import hooks as wiring

        worker = getattr(_django_runner, "_worker_id", 0)
        live.CACHESTRAT = {**live.CACHESTRAT, "KEY_PREFIX": f"cs.w{worker}"}
        wiring.reset()
        # Pool workers end without running atexit hooks: report reads after each subsuite.
        _runner_module = sys.modules["django.test.runner"]
        original_run = _runner_module.RemoteTestRunner.run

        def run(self: object, test: object) -> object:
            try:
                return original_run(self, test)
            finally:
                _report_reads()

        _runner_module.RemoteTestRunner.run = run  # type: ignore[method-assign]

    # runtests.py imports the runner before these settings; its workers start with this.
    _django_runner = sys.modules.get("django.test.runner")
    if _django_runner is not None:
        _original_init_worker = _django_runner._init_worker
        _django_runner.ParallelTestSuite.init_worker = _init_worker  # type: ignore[assignment]


def _database(name: str) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        # The test runner creates (and drops) exactly these databases.
        "TEST": {"NAME": name},
    }


DATABASES = {
    "default": _database(os.environ.get("CACHESTRAT_DJANGO_SUITE_DB", "cachestrat_dj_default")),
    "other": _database(os.environ.get("CACHESTRAT_DJANGO_SUITE_OTHER_DB", "cachestrat_dj_other")),
}

# "default" stays Django's own default (local memory), so Django's cache tests see what they
# expect; the row cache has an alias of its own.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "cachestrat": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("CACHESTRAT_DJANGO_SUITE_REDIS", "redis://127.0.0.1:6379/14"),
    },
}

CACHESTRAT = {
    "CACHE_ALIAS": "cachestrat",
    "MODELS": {"*": {"transparent": True}},
}

# As in Django's tests/test_sqlite.py.
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
