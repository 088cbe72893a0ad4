"""Fail-open: with Redis stopped, reads come from the database and writes succeed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django_redis import get_redis_connection
from redis.exceptions import ConnectionError as RedisConnectionError

from django_cachestrat.breaker import breaker
from django_cachestrat.client import breaker_states
from django_cachestrat.pending import pending
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries
from tests.servers import RedisServer
from tests.testapp.models import Profile, Team

pytestmark = pytest.mark.django_db


@pytest.fixture
def flaky() -> Iterator[RedisServer]:
    """CACHESTRAT pointed at a redis-server of the test's own, with short timeouts."""
    server = RedisServer()
    server.start()
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "flaky": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    cachestrat = {"CACHE_ALIAS": "flaky", "BREAKER_THRESHOLD": 2, "BREAKER_COOLDOWN": 0.5}
    try:
        with override_settings(CACHES=caches, CACHESTRAT=cachestrat):
            yield server
    finally:
        server.stop()


def test_reads_and_writes_work_with_redis_stopped(flaky):
    profile = ProfileFactory(username="solo", age=1)
    Profile.cached.get(pk=profile.pk)
    flaky.stop()
    assert Profile.cached.get(pk=profile.pk).age == 1
    assert Profile.cached.get(username="solo").pk == profile.pk
    assert list(Profile.cached.get_many([profile.pk, 999])) == [profile.pk]
    profile.age = 2
    profile.save()
    ProfileFactory(username="another")
    profile.delete()
    Profile.cached.invalidate(1)
    Profile.cached.flush()
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=profile.pk)


def test_breaker_opens_so_a_dead_redis_costs_no_timeout_per_call(flaky):
    """A hung server (stopped by SIGSTOP, so calls wait out their timeout rather than being
    refused at once): past the threshold, no read goes to it while the breaker is open."""
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    assert flaky.process is not None
    # A cool-down no slow host outlasts, so every read below meets the open breaker.
    with override_settings(CACHESTRAT={**settings.CACHESTRAT, "BREAKER_COOLDOWN": 600}):
        Profile.cached.get(pk=profile.pk)  # connected while the server answers
        os.kill(flaky.process.pid, signal.SIGSTOP)
        try:
            for _ in range(2):  # the threshold: each waits out the 0.2 s timeout
                assert Profile.cached.get(pk=profile.pk).pk == profile.pk
            assert breaker.is_open and breaker.errors == 2
            start = time.perf_counter()
            for _ in range(50):
                assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 1
            per_call = (time.perf_counter() - start) / 50
        finally:
            os.kill(flaky.process.pid, signal.SIGCONT)
    assert breaker.errors == 2  # none of the 50 went to the server
    print(f"{per_call * 1000:.2f} ms per read while the breaker is open")


def test_breaker_closes_again_once_redis_is_back(flaky):
    profile = ProfileFactory()
    flaky.stop()
    for _ in range(3):
        Profile.cached.get(pk=profile.pk)
    assert breaker.is_open and breaker.trips == 1
    flaky.start()
    time.sleep(0.6)  # the cool-down
    Profile.cached.get(pk=profile.pk)  # the probe succeeds and closes the breaker
    assert not breaker.is_open and breaker.failures == 0
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0


def test_one_server_has_one_breaker_state_named_by_its_address(flaky):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    address = f"127.0.0.1:{flaky.port}"
    assert breaker_states() == {address: "closed"}
    flaky.stop()
    for _ in range(2):  # the threshold
        Profile.cached.get(pk=profile.pk)
    assert breaker_states() == {address: "open"}
    time.sleep(0.6)  # the cool-down: the next call probes
    assert breaker_states() == {address: "half-open"}


def test_invalidations_missed_during_an_outage_are_replayed(flaky):
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    # Pause the server (connections hang, then time out) instead of stopping it, so the
    # cached row survives the outage: the stale-after-recovery case.
    client = get_redis_connection("flaky")
    client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    profile.age = 2
    profile.save()  # both deletes time out
    assert pending.keys
    time.sleep(1.6)
    # The first call that reaches Redis again replays the deletes before it reads.
    assert Profile.cached.get(pk=profile.pk).age == 2
    assert not pending


def test_out_of_memory_redis_falls_back_to_the_database(flaky):
    profiles = ProfileFactory.create_batch(3)
    client = get_redis_connection("flaky")
    client.config_set("maxmemory", "1")  # every write is refused with an OOM error
    client.config_set("maxmemory-policy", "noeviction")
    got = Profile.cached.get_many([p.pk for p in profiles])
    assert sorted(got) == sorted(p.pk for p in profiles)
    assert Profile.cached.get(pk=profiles[0].pk).pk == profiles[0].pk


@override_settings(CACHESTRAT={"FAIL_OPEN": False})
def test_fail_open_off_raises_redis_errors():
    server = RedisServer()
    server.start()
    server.stop()
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    profile = ProfileFactory.build(pk=1)
    with override_settings(CACHES=caches), pytest.raises(RedisConnectionError):
        Profile.cached.get(pk=profile.pk)


@pytest.fixture
def patient() -> Iterator[RedisServer]:
    """As ``flaky``, with a socket timeout that outlasts a short pause of Redis's writes."""
    server = RedisServer()
    server.start()
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "patient": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1.0, "SOCKET_TIMEOUT": 1.0},
        },
    }
    cachestrat = {"CACHE_ALIAS": "patient", "BREAKER_THRESHOLD": 10}
    try:
        with override_settings(CACHES=caches, CACHESTRAT=cachestrat):
            yield server
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_no_thread_reads_the_old_row_while_another_replays_its_invalidation(patient):
    team = TeamFactory(name="old")
    Team.cached.get(pk=team.pk)
    admin = redis.Redis.from_url(patient.url)
    # Writes wait while reads go on: the row stays cached, its delete times out.
    admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        team.name = "new"
        team.save()
        assert pending.keys and not breaker.is_open
        seen: dict[str, str] = {}

        def read(name: str) -> None:
            try:
                seen[name] = Team.cached.get(pk=team.pk).name
            finally:
                connection.close()

        replaying = threading.Thread(target=read, args=("replaying",))
        replaying.start()  # its replay (a write) now waits on the pause
        time.sleep(0.3)
        other = threading.Thread(target=read, args=("other",))
        other.start()
        other.join(5)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    replaying.join(5)
    assert seen == {"replaying": "new", "other": "new"}
    assert Team.cached.get(pk=team.pk).name == "new" and not pending
