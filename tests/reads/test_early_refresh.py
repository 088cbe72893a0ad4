"""Early refresh (XFetch): a hot row is recomputed before it expires, so readers never miss."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections
from django.test import override_settings

from django_cachestrat.plan import plan_for
from django_cachestrat.reads import is_refresh_due
from django_cachestrat.serializers import Payload
from django_cachestrat.stats import reset
from tests.factories import ProfileFactory
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db


def steady_load(pk: int, seconds: float, readers: int = 4, slow_ms: float = 30) -> dict[str, int]:
    """Readers hit one row non-stop while it expires; the row's query takes ``slow_ms``."""
    queries = [0]
    lock = threading.Lock()

    def slow(execute, sql, params, many, context):
        if sql.startswith("SELECT") and '"testapp_profile"' in sql:
            with lock:
                queries[0] += 1
            time.sleep(slow_ms / 1000)
        return execute(sql, params, many, context)

    def read() -> None:
        try:
            with connection.execute_wrapper(slow):
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    Profile.cached.get(pk=pk)
        finally:
            connections.close_all()

    reset()
    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stats = plan_for(Profile).stats
    return {"misses": stats.misses, "queries": queries[0], "refreshes": stats.early_refreshes}


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_steady_load_across_expiry_misses_far_less_with_early_refresh():
    profile = ProfileFactory()
    figures = {}
    for beta in (0, 1.0):
        settings = {"TIMEOUT": 0.4, "JITTER": 0, "EARLY_REFRESH": beta, "MODELS": {}}
        with override_settings(CACHESTRAT=settings):
            Profile.cached.get(pk=profile.pk)
            figures[beta] = steady_load(profile.pk, seconds=2.0)
    without, with_ = figures[0], figures[1.0]
    expiries = 2.0 / 0.4
    assert without["refreshes"] == 0
    assert without["misses"] >= expiries - 1, figures  # each expiry is a miss for everyone
    assert with_["refreshes"] >= expiries - 1, figures
    assert with_["misses"] * 3 <= without["misses"], figures
    # Leases keep it to one query per period without; XFetch refreshes somewhat before
    # the end of each period at this read rate, so a few more periods fit in the run.
    assert without["queries"] <= expiries + 1, figures
    assert with_["queries"] <= 2.5 * expiries, figures


def test_refresh_is_due_only_near_expiry():
    now_ms = time.time() * 1000
    far = Payload([0, "", b"", 1_000, int(now_ms + 60_000)])  # 1 ms to compute, 60 s left
    near = Payload([0, "", b"", 1_000_000, int(now_ms + 1)])  # 1 s to compute, 1 ms left
    assert not any(is_refresh_due(far, 1.0) for _ in range(1000))
    assert sum(is_refresh_due(near, 1.0) for _ in range(1000)) > 990
    assert not is_refresh_due(Payload([0, "", b"", 1_000, 0]), 1.0)  # no expiry recorded
