"""An increment whose reply is lost is written to the database and settled in Redis once:
however often the settle call is replayed, and whatever the thread sends meanwhile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_cachestrat import drain
from django_cachestrat.breaker import breaker
from django_cachestrat.client import connection
from django_cachestrat.pending import pending
from django_cachestrat.scripts import run_many, scripts
from tests.factories import ProfileFactory
from tests.servers import LossyProxy, RedisServer
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lossy() -> Iterator[LossyProxy]:
    """The cache behind a proxy that can lose replies or commands, on a Redis of its own."""
    server = RedisServer()
    server.start()
    proxy = LossyProxy(server.port)
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": proxy.url,
            "OPTIONS": {
                # Long enough that a reply the proxy passes on is never late on a slow host.
                "SOCKET_CONNECT_TIMEOUT": 1.0,
                "SOCKET_TIMEOUT": 1.0,
                # One try per command: a retry would only hide the loss under test.
                "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 0)},
            },
        }
    }
    try:
        # The breaker stays closed: every call below reaches the proxy.
        with override_settings(CACHES=caches, CACHESTRAT={"BREAKER_THRESHOLD": 100}):
            breaker.reset()
            pending.clear()
            yield proxy
    finally:
        proxy.close()
        server.stop()
        breaker.reset()
        pending.clear()


def db_likes(pk: int) -> int:
    return Profile.objects.values_list("likes", flat=True).get(pk=pk)


def pending_likes(pk: int) -> int:
    plan = Profile.cached.plan
    stripe = plan.keys.stripe(plan.keys.stripe_of(pk, plan.stripes))
    return int(connection().hget(stripe.pending, f"likes:{pk}") or 0)


def load_scripts() -> None:
    """Load the scripts ahead: a NOSCRIPT reply lost would stop a script from running."""
    for script in vars(scripts).values():
        connection().script_load(script.source)


def test_a_settle_call_replayed_twice_undoes_the_increment_once(lossy):
    pk = ProfileFactory(likes=0).pk
    load_scripts()
    lossy.lose_replies = True
    Profile.cached.incr(pk, "likes", by=5)  # Redis applies it; the reply is lost
    assert db_likes(pk) == 5  # written to the database instead, and a settle call kept
    Profile.cached.get(pk=pk)  # replays the settle: it runs, and its reply is lost too
    lossy.lose_replies = False
    Profile.cached.incr(pk, "likes", by=1)  # replays it once more, then counts in Redis
    assert pending_likes(pk) == 1
    drain.drain_all()
    assert db_likes(pk) == 6


def test_a_settle_that_runs_after_the_threads_next_increment_is_exact(lossy):
    """Another thread's replay may take the settle call and send it only after this
    thread's next increment has reached Redis."""
    pk = ProfileFactory(likes=0).pk
    load_scripts()
    lossy.lose_commands = True
    Profile.cached.incr(pk, "likes", by=5)  # never reaches Redis: written to the database
    lossy.lose_commands = False
    calls = list(pending.calls)
    assert len(calls) == 1
    pending.clear()  # ... taken by the other thread's replay
    Profile.cached.incr(pk, "likes", by=1)
    run_many(connection(), calls)  # ... which sends it now
    assert pending_likes(pk) == 1
    drain.drain_all()
    assert db_likes(pk) == 6
