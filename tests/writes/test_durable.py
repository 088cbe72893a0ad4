"""Missed invalidations outlive the process that missed them: any process replays them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_redis import get_redis_connection

from django_cachestrat import tasks
from django_cachestrat.models import PendingInvalidation
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for
from tests.factories import TeamFactory
from tests.servers import RedisServer
from tests.testapp.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that keeps its data across a restart (AOF), as production ones do."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    server.start()
    caches = server.caches()
    try:
        with override_settings(CACHES=caches):
            yield server
    finally:
        server.stop()


def child(action: str, pk: int, server: RedisServer) -> str:
    """Run ``tests/durable_child.py`` in a new process against this test's database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        CACHESTRAT_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        CACHESTRAT_TEST_REDIS_URL=server.url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.durable_child", action, str(pk)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_process_that_exits_during_an_outage_leaves_no_stale_row(durable_redis):
    team = TeamFactory(name="before")
    Team.cached.get(pk=team.pk)
    key = plan_for(Team).keys.row(team.pk)
    durable_redis.stop()
    child("write", team.pk, durable_redis)  # its delete cannot reach Redis; then it exits
    assert Team.objects.get(pk=team.pk).name == "after"
    durable_redis.start()
    assert get_redis_connection("default").exists(key) == 1  # the old row survived the restart
    assert child("read", team.pk, durable_redis) == "after"


def _replay_by_command() -> int:
    out = StringIO()
    call_command("cachestrat_replay_invalidations", stdout=out)
    words = out.getvalue().split()
    assert words[0] == "Replayed" and words[2:] in (
        ["missed", "invalidation."],
        ["missed", "invalidations."],
    )
    return int(words[1])


@pytest.mark.parametrize("replay", [_replay_by_command, tasks.replay_invalidations])
def test_the_command_and_the_periodic_task_replay_what_a_dead_process_left(durable_redis, replay):
    team = TeamFactory(name="before")
    Team.cached.get(pk=team.pk)
    durable_redis.stop()
    child("write", team.pk, durable_redis)
    assert PendingInvalidation.objects.count() == 1
    durable_redis.start()
    assert Team.cached.get(pk=team.pk).name == "before"  # this process saw no outage
    assert PendingInvalidation.objects.count() == 1
    assert replay() == 1
    assert Team.cached.get(pk=team.pk).name == "after"
    assert not PendingInvalidation.objects.exists()
    assert replay() == 0  # nothing left, nothing breaks
    assert Team.cached.get(pk=team.pk).name == "after"


def test_a_record_that_cannot_be_written_never_fails_the_write(durable_redis, caplog):
    team = TeamFactory(name="before")
    durable_redis.stop()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_cachestrat_pendinginvalidation RENAME TO cs_gone")
    try:
        Team.objects.filter(pk=team.pk).update(name="after")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE cs_gone RENAME TO django_cachestrat_pendinginvalidation")
    assert Team.objects.get(pk=team.pk).name == "after"
    assert pending.keys  # still replayed by this process
    assert "Could not record missed invalidations" in caplog.text


def test_the_process_that_missed_the_invalidation_replays_every_record(durable_redis):
    team = TeamFactory(name="before")
    Team.cached.get(pk=team.pk)
    durable_redis.stop()
    Team.objects.filter(pk=team.pk).update(name="after")
    assert PendingInvalidation.objects.count() == 1
    durable_redis.start()
    assert Team.cached.get(pk=team.pk).name == "after"
    assert not PendingInvalidation.objects.exists() and not pending


def test_past_the_limit_the_record_flushes_the_model(durable_redis, monkeypatch):
    monkeypatch.setattr(type(pending), "LIMIT", 1)
    teams = [TeamFactory(name="before") for _ in range(3)]
    durable_redis.stop()
    for team in teams:
        Team.objects.filter(pk=team.pk).update(name="after")
    records = list(PendingInvalidation.objects.values_list("keys", "generations"))
    assert len(records) == 3
    assert records[0][0] and not records[-1][0]  # keys first, then the model's generation
    assert plan_for(Team).keys.generation in records[-1][1]


def test_a_running_process_that_saw_the_outage_replays_what_a_dead_one_left(durable_redis):
    team = TeamFactory(name="before")
    Team.cached.get(pk=team.pk)
    durable_redis.stop()
    Team.cached.get(pk=team.pk)  # this process meets the outage on a read
    child("write", team.pk, durable_redis)
    durable_redis.start()
    assert Team.cached.get(pk=team.pk).name == "after"
    assert not PendingInvalidation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_records_are_never_replayed_inside_the_callers_transaction():
    """The replay locks and deletes records: inside the caller's atomic() those locks would
    last until the caller commits, and block every other process's replay meanwhile."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    team = TeamFactory(name="t")
    PendingInvalidation.objects.create(keys=["cs:nothing"], generations=[])
    pending.expect_records()
    with transaction.atomic(), CaptureQueriesContext(connection) as inside:
        assert Team.cached.get(pk=team.pk).name == "t"
    assert not [q for q in inside.captured_queries if "pendinginvalidation" in q["sql"]]
    assert PendingInvalidation.objects.count() == 1  # still there, for later
    Team.cached.get(pk=team.pk)  # outside a transaction: replayed now
    assert PendingInvalidation.objects.count() == 0
