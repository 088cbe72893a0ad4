"""Eviction can only cause misses: generation keys that Redis drops never bring old rows back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from django_cachestrat import invalidation
from django_cachestrat.checks_counters import check_eviction
from django_cachestrat.overview import gather
from django_cachestrat.plan import plan_for
from tests import cluster as servers
from tests.factories import ProfileFactory
from tests.servers import RedisServer
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def evict_keys_without_ttl(redis_client: Any, pattern: str) -> list[bytes]:
    """What an ``allkeys-*`` policy may do: drop keys that have no TTL."""
    gone = [key for key in redis_client.scan_iter(pattern) if redis_client.pttl(key) == -1]
    if gone:
        redis_client.delete(*gone)
    return gone


def test_an_evicted_generation_never_revives_rows_of_an_older_one(redis_client, monkeypatch):
    monkeypatch.setattr(invalidation, "BULK_LIMIT", 1)  # an update of 2 rows is a flush
    old, other = ProfileFactory(age=1), ProfileFactory(age=1)
    pks = [old.pk, other.pk]
    Profile.cached.get_many(pks)  # both cached under the first generation
    Profile.objects.filter(pk__in=pks).update(age=2)  # flushes the model: a new generation
    assert Profile.cached.get(pk=other.pk).age == 2  # refilled under the new one
    keys = plan_for(Profile).keys
    # The first payload of `old` is still stored (its TTL has not run out) ...
    assert redis_client.get(keys.row(old.pk)) is not None
    gone = evict_keys_without_ttl(redis_client, keys.pattern)
    assert keys.generation.encode() in gone
    # ... and must not be served once the generation key is gone.
    assert Profile.cached.get(pk=old.pk).age == 2
    assert Profile.cached.get(pk=other.pk).age == 2
    assert Profile.cached.get_many(pks)[old.pk].age == 2


def test_an_evicted_absence_generation_never_revives_an_absence(redis_client):
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="late")  # cached as "no such row"
    Profile.objects.bulk_create([Profile(username="late")])  # voids every cached absence
    evict_keys_without_ttl(redis_client, plan_for(Profile).keys.pattern)
    assert Profile.cached.get(username="late").username == "late"


def test_a_missing_generation_matches_nothing_and_is_set_at_the_first_fill(redis_client):
    profile = ProfileFactory()
    keys = plan_for(Profile).keys
    assert redis_client.get(keys.generation) is None
    Profile.cached.get(pk=profile.pk)
    first = redis_client.get(keys.generation)
    assert first and len(first) == 16  # a random value, set by the fill
    Profile.cached.flush()
    second = redis_client.get(keys.generation)
    assert second and second != first


@pytest.fixture(params=["allkeys-lru", "volatile-lru"])
def policy_server(request) -> Iterator[tuple[str, RedisServer]]:
    """A throwaway Redis with maxmemory set and that policy, as the app's CONNECTION."""
    server = RedisServer("--maxmemory", "64mb", "--maxmemory-policy", request.param)
    server.start()
    servers.running["standalone"] = server
    cachestrat = {**settings.CACHESTRAT, "CONNECTION": "tests.cluster.standalone_client"}
    try:
        with override_settings(CACHESTRAT=cachestrat):
            yield request.param, server
    finally:
        servers.running.pop("standalone", None)
        server.stop()


def test_an_allkeys_policy_with_counters_is_warned_about(policy_server, caplog):
    policy, _ = policy_server
    evicting = policy.startswith("allkeys-")
    with caplog.at_level(logging.WARNING, logger="django_cachestrat"):
        ProfileFactory()  # the first Redis call of this connection
    logged = [r.getMessage() for r in caplog.records if "write-behind" in r.getMessage()]
    assert bool(logged) == evicting
    if evicting:
        assert "maxmemory-policy allkeys-lru" in logged[0] and "testapp.profile" in logged[0]
    warnings = check_eviction()
    assert [w.id for w in warnings] == (["django_cachestrat.W130"] if evicting else [])
    server = gather().server
    assert server is not None
    assert (server.eviction_risk is not None) == evicting
    assert any("write-behind" in w for w in server.warnings) == evicting


def test_no_counters_no_eviction_warning(policy_server):
    cachestrat = {
        "CONNECTION": "tests.cluster.standalone_client",
        "MODELS": {"testapp.Profile": {"counters": []}},
    }
    with override_settings(CACHESTRAT=cachestrat):
        assert check_eviction() == []


def test_an_unreachable_redis_gives_no_eviction_warning():
    with override_settings(
        CACHES={"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    ):
        assert check_eviction() == []
