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
from django_cachestrat.breaker import breaker
from django_cachestrat.tasks import beat_schedule, consume_external_writes
from tests.factories import ProfileFactory
from tests.servers import RedisServer
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


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


def test_tables_in_a_schema_or_with_a_dot_in_their_name_are_captured(captured):
    from tests.testapp.models import Dotted, Schemed

    schemed, dotted = Schemed.objects.create(name="a"), Dotted.objects.create(name="a")
    consume()
    assert (Schemed.cached.get(pk=schemed.pk).name, Dotted.cached.get(pk=dotted.pk).name) == (
        "a",
        "a",
    )
    outside('UPDATE "cachestrat_schema"."schemed" SET name = %s', ["b"])
    outside('UPDATE "testapp.dotted" SET name = %s', ["b"])
    assert "Consumed 2 captured writes." in consume()
    assert Schemed.cached.get(pk=schemed.pk).name == "b"
    assert Dotted.cached.get(pk=dotted.pk).name == "b"


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
    assert state["outbox"] and "public.testapp_profile" in state["tables"]
    assert "cachestrat_schema.schemed" in state["tables"] and state["missing"] == []
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


def _until_consuming(child: subprocess.Popen[str]) -> None:
    """Waits until the consumer has invalidated one outside write: it is up and polling."""
    probe = ProfileFactory(age=0)
    Profile.cached.get(pk=probe.pk)
    outside("UPDATE testapp_profile SET age = 1 WHERE id = %s", [probe.pk])
    deadline = time.monotonic() + 60
    while Profile.cached.get(pk=probe.pk).age != 1:
        assert child.poll() is None, "the consumer exited"
        assert time.monotonic() < deadline, "the consumer did not start within 60 s"
        time.sleep(0.01)


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
        _until_consuming(child)
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
    caches = server.caches()
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


WRITES = 1000


def test_a_thousand_psql_writes_are_each_invalidated_within_a_measured_bound(
    captured, redis_client, tmp_path
):
    """A separate ``psql`` process updates 1,000 cached rows one statement at a time, while
    the consumer runs; each row's key is watched in Redis until it goes. Delay: from the
    write (the database's clock, same machine) to the key's deletion."""
    from django_cachestrat.plan import plan_for

    Profile.objects.bulk_create(Profile(username=f"psql{i}") for i in range(WRITES))
    pks = list(Profile.objects.filter(username__startswith="psql").values_list("pk", flat=True))
    consume()  # the inserts above were captured too
    assert len(Profile.cached.get_many(pks)) == WRITES
    keys = [plan_for(Profile).keys.row(pk) for pk in pks]
    assert all(redis_client.mget(keys))
    script = "".join(
        f"UPDATE testapp_profile SET age = age + 1 WHERE id = {pk} "
        f"RETURNING id, extract(epoch FROM clock_timestamp());\nSELECT pg_sleep(0.002);\n"
        for pk in pks
    )
    settings = connection.settings_dict
    psql = ["psql", "-X", "-q", "-At", "-h", str(settings["HOST"]), "-p", str(settings["PORT"])]
    psql += ["-U", str(settings["USER"]), "-d", str(settings["NAME"]), "-v", "ON_ERROR_STOP=1"]
    child = _consumer("-m", "django", "cachestrat_external_writes", "consume")
    try:
        _until_consuming(child)
        (tmp_path / "writes.sql").write_text(script)
        psql += ["-f", str(tmp_path / "writes.sql")]
        writer = subprocess.Popen(psql, stdout=subprocess.PIPE, text=True)
        gone: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while len(gone) < WRITES and time.monotonic() < deadline:
            now = time.time()
            for pk, value in zip(pks, redis_client.mget(keys), strict=True):
                if value is None and pk not in gone:
                    gone[pk] = now
            time.sleep(0.002)
        out, _ = writer.communicate(timeout=120)
    finally:
        child.terminate()
        child.wait(30)
        child.stdout.close()  # type: ignore[union-attr]
    written = {int(pk): float(at) for pk, at in (line.split("|") for line in out.split())}
    assert len(written) == WRITES and len(gone) == WRITES  # every write invalidated
    delays = sorted((gone[pk] - written[pk]) * 1000 for pk in pks)
    p50, p99, worst = delays[WRITES // 2], delays[WRITES * 99 // 100], delays[-1]
    print(f"{WRITES} psql writes: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms")
    assert p99 < 2000, (p50, p99, worst)  # the consumer polls every 0.05 s here
