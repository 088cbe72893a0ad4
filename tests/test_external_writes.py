"""Writes made outside Django (invariant 13): PostgreSQL triggers record them in an outbox,
and the consumer invalidates them, at least once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from django_cachestrat import external
from django_cachestrat.client import breaker
from django_cachestrat.tasks import beat_schedule, consume_external_writes
from tests.factories import ProfileFactory
from tests.servers import RedisServer
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured() -> Iterator[None]:
    call_command("cachestrat_external_writes", "install", stdout=StringIO())
    try:
        yield
    finally:
        call_command("cachestrat_external_writes", "uninstall", stdout=StringIO())


def outside(sql: str, params: Any = ()) -> None:
    """Run SQL from another client: a connection of its own, not Django's."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
    ) as conn:
        conn.execute(sql, params)


def consume() -> str:
    out = StringIO()
    call_command("cachestrat_external_writes", "consume", "--once", stdout=out)
    return out.getvalue()


def test_updates_inserts_and_deletes_made_outside_are_invalidated(captured):
    kept, gone = ProfileFactory(age=1), ProfileFactory()
    assert "Consumed 2 captured writes." in consume()  # Django's own inserts are captured too
    assert Profile.cached.get(pk=kept.pk).age == 1
    Profile.cached.get(pk=gone.pk)
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=10_000)  # cached as absent
    outside("UPDATE testapp_profile SET age = 2 WHERE id = %s", [kept.pk])
    outside("DELETE FROM testapp_profile WHERE id = %s", [gone.pk])
    outside(
        "INSERT INTO testapp_profile (id, username, email, bio, age, score, likes, balance, "
        "active, ref, ratio, data, status) VALUES (10000, 'new', '', '', 0, 0, 0, 0, true, "
        "gen_random_uuid(), 0, '{}', 'a')"
    )
    assert Profile.cached.get(pk=kept.pk).age == 1  # not seen yet: the cache is stale
    assert "Consumed 3 captured writes." in consume()
    assert Profile.cached.get(pk=kept.pk).age == 2
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=gone.pk)
    assert Profile.cached.get(pk=10_000).username == "new"
    assert external.status("default")["backlog"] == 0


def test_a_lookup_renamed_outside_is_found_by_its_new_value(captured):
    profile = ProfileFactory(username="old-name")
    Profile.cached.get(username="old-name")
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="new-name")  # cached as absent
    outside("UPDATE testapp_profile SET username = 'new-name' WHERE id = %s", [profile.pk])
    consume()
    assert Profile.cached.get(username="new-name").pk == profile.pk
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="old-name")


def test_a_truncate_outside_flushes_the_model(captured):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    outside("TRUNCATE testapp_profile CASCADE")
    consume()
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=profile.pk)


def test_the_celery_task_consumes_and_beat_schedules_it_when_enabled(captured):
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    outside("UPDATE testapp_profile SET age = 5 WHERE id = %s", [profile.pk])
    assert consume_external_writes() == 2  # the factory's insert, and the update
    assert Profile.cached.get(pk=profile.pk).age == 5
    assert "django_cachestrat.consume_external_writes" not in beat_schedule()
    with override_settings(CACHESTRAT={"EXTERNAL_WRITES": {"ENABLED": True, "INTERVAL": 0.5}}):
        entry = beat_schedule()["django_cachestrat.consume_external_writes"]
    assert entry["schedule"] == 0.5


def test_status_and_uninstall(captured):
    state = external.status("default")
    assert state["outbox"] and "testapp_profile" in state["tables"] and state["missing"] == []
    external.uninstall("default")
    assert external.status("default") == {
        **state,
        "outbox": False,
        "tables": [],
        "missing": state["tables"],
    }
    with pytest.raises(CommandError, match="not installed"):
        consume()
    external.install("default")


def _consumer(*args: str, **popen: Any) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        CACHESTRAT_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        CACHESTRAT_TEST_EXTERNAL_INTERVAL="0.05",
    )
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, **popen
    )


def test_a_consumer_killed_mid_batch_loses_nothing(captured):
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    outside("UPDATE testapp_profile SET age = 2 WHERE id = %s", [profile.pk])
    child = _consumer("-m", "tests.external_child")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "taken"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
    assert Profile.cached.get(pk=profile.pk).age == 1  # killed before it invalidated
    assert external.status("default")["backlog"] == 2  # the batch (insert, update) is kept
    consume()
    assert Profile.cached.get(pk=profile.pk).age == 2


def test_the_running_consumer_catches_an_outside_write_within_a_bound(captured):
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    child = _consumer("-m", "django", "cachestrat_external_writes", "consume")
    try:
        time.sleep(1.0)  # started
        outside("UPDATE testapp_profile SET age = 2 WHERE id = %s", [profile.pk])
        written = time.monotonic()
        while Profile.cached.get(pk=profile.pk).age != 2:
            assert time.monotonic() - written < 5, "not invalidated within 5 s"
            time.sleep(0.005)
        delay = time.monotonic() - written
    finally:
        child.terminate()
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
    print(f"outside write invalidated after {delay * 1000:.0f} ms")
    assert delay < 1.0  # INTERVAL is 0.05 s in the consumer


def test_with_redis_down_the_batch_stays_for_the_next_run(captured, tmp_path):
    profile = ProfileFactory(age=1)
    # Data kept across the restart (AOF), so the stale row is still cached after it.
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    server.start()
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    try:
        with override_settings(CACHES=caches):
            Profile.cached.get(pk=profile.pk)
            outside("UPDATE testapp_profile SET age = 2 WHERE id = %s", [profile.pk])
            server.stop()
            with pytest.raises(CommandError, match="Redis is unavailable"):
                consume()
            assert external.status("default")["backlog"] == 2  # the insert and the update
            server.start()
            breaker.reset()
            assert Profile.cached.get(pk=profile.pk).age == 1  # still stale: not consumed
            consume()
            assert external.status("default")["backlog"] == 0
            assert Profile.cached.get(pk=profile.pk).age == 2
    finally:
        server.stop()
