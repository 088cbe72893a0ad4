"""The ``cachestrat_*`` management commands, against the real Redis and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_cachestrat import stats
from django_cachestrat.inspection import STATE_TEXT
from django_cachestrat.options import cached_models
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for
from tests.factories import ItemFactory, ProfileFactory, TeamFactory
from tests.helpers import assert_cached, count_queries
from tests.servers import free_port
from tests.testapp.models import Item, Profile, Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    stats.reset()


def run(*args: Any) -> tuple[str, str]:
    """Run a command; return what it wrote to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def raw_update(sql: str, params: tuple[Any, ...]) -> None:
    """Write on a connection of its own, which Django (and so the cache) never sees."""
    settings = connection.get_connection_params()
    conninfo = {k: settings[k] for k in ("dbname", "user", "host", "port") if k in settings}
    with psycopg.connect(**conninfo, autocommit=True) as raw:
        raw.execute(sql, params)


def is_cached(redis_client: Any, model: Any, pk: Any) -> bool:
    return bool(redis_client.exists(plan_for(model).keys.row(pk)))


@pytest.fixture
def dead_redis() -> Iterator[None]:
    """CACHESTRAT pointed at a port where no Redis listens."""
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "dead": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    with override_settings(CACHES=caches, CACHESTRAT={"CACHE_ALIAS": "dead"}):
        yield


# Bad input shared by every command that takes a model.

MODEL_COMMANDS = [
    ("cachestrat_invalidate",),
    ("cachestrat_warm",),
    ("cachestrat_inspect", "1"),
    ("cachestrat_flush_counters",),
]


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("testapp.Nope", r"Unknown model 'testapp.Nope': .*doesn't have a 'Nope' model"),
        ("nope.Profile", r"Unknown model 'nope.Profile': No installed app with label 'nope'"),
        ("testapp.Profil", r"Unknown model .* Did you mean testapp.Profile\?$"),
        ("Profile", r"'Profile' is not a model name: use app_label.Model"),
        ("testapp.Profile.x", r"is not a model name"),
        ("testapp.Plain", r"testapp.Plain is not cached: inherit CacheAsideMixin"),
    ],
)
def test_a_bad_model_argument_is_a_command_error(
    command: tuple[str, ...], label: str, message: str
) -> None:
    name, *rest = command
    with pytest.raises(CommandError, match=message):
        run(name, label, *rest)


# cachestrat_stats


def test_stats_table_shows_every_cached_model_and_redis() -> None:
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    Profile.cached.get(pk=profile.pk)
    out, _ = run("cachestrat_stats", "--minutes", "5")
    assert "last 5 minutes" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for heading in ("hits", "misses", "hit ratio", "fills", "median hit µs", "median fill µs"):
        assert heading in header
    assert "rejected" in header and "lease waits" in header and "invalidations" in header
    profile_line = next(line for line in out.splitlines() if line.startswith("testapp.profile "))
    assert re.search(r"testapp\.profile\s+1\s+1\s+50\.0%\s+1\s", profile_line), profile_line
    assert re.search(r"^testapp\.team\s+0\s+0\s+-\s+0\s+-\s+-\s", out, re.MULTILINE)
    assert re.search(r"^_redis\s+0\s+0$", out, re.MULTILINE)


def test_stats_json_is_machine_readable() -> None:
    profile = ProfileFactory()
    for _ in range(3):
        Profile.cached.get(pk=profile.pk)
    out, _ = run("cachestrat_stats", "--json")
    report = json.loads(out)
    assert report["minutes"] == 60
    figures = report["models"]["testapp.profile"]
    assert (figures["hits"], figures["misses"], figures["fills"]) == (2, 1, 1)
    assert figures["hit_ratio"] == pytest.approx(2 / 3)
    assert figures["median_hit_us"] > 0 and figures["median_fill_us"] > 0
    assert report["models"]["auth.user"]["hit_ratio"] is None  # idle models are listed too
    assert report["redis"] == {"redis_errors": 0, "breaker_trips": 0}


@pytest.mark.parametrize("minutes", ["0", "-5", "1441"])
def test_stats_minutes_out_of_range(minutes: str) -> None:
    with pytest.raises(CommandError, match="--minutes must be between 1 and 1440"):
        run("cachestrat_stats", "--minutes", minutes)


def test_stats_with_redis_down_is_a_command_error(dead_redis: None) -> None:
    with pytest.raises(CommandError, match="Redis is unavailable, could not read the statistics"):
        run("cachestrat_stats")


# cachestrat_invalidate


def test_invalidate_pks_drops_those_rows_only(redis_client: Any) -> None:
    a, b, c = TeamFactory(), TeamFactory(), TeamFactory()
    Team.cached.get_many([a.pk, b.pk, c.pk])
    out, _ = run("cachestrat_invalidate", "testapp.Team", str(a.pk), str(b.pk))
    assert out.strip() == f"Invalidated 2 rows of testapp.Team: {a.pk}, {b.pk}."
    assert not is_cached(redis_client, Team, a.pk)
    assert not is_cached(redis_client, Team, b.pk)
    assert is_cached(redis_client, Team, c.pk)


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_invalidate_drops_the_lookups_of_the_rows_current_values() -> None:
    profile = ProfileFactory(username="ann")
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="bob")  # caches "no such username"
    raw_update("UPDATE testapp_profile SET username = 'bob' WHERE id = %s", (profile.pk,))
    run("cachestrat_invalidate", "testapp.Profile", str(profile.pk))
    assert Profile.cached.get(username="bob").pk == profile.pk


def test_invalidate_takes_uuid_pks(redis_client: Any) -> None:
    item = ItemFactory()
    Item.cached.get(pk=item.pk)
    out, _ = run("cachestrat_invalidate", "testapp.Item", str(item.pk))
    assert out.strip() == f"Invalidated 1 row of testapp.Item: {item.pk}."
    assert not is_cached(redis_client, Item, item.pk)


def test_invalidate_a_model_without_pks_flushes_its_namespace() -> None:
    team = TeamFactory()
    profile = ProfileFactory()
    assert_cached(lambda: Team.cached.get(pk=team.pk))
    Profile.cached.get(pk=profile.pk)
    out, _ = run("cachestrat_invalidate", "testapp.Team")
    assert "Flushed the namespace of testapp.Team" in out
    assert_cached(lambda: Team.cached.get(pk=team.pk))  # a miss again, then a hit
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0  # untouched


def test_invalidate_all_flushes_every_cached_model() -> None:
    team, profile = TeamFactory(), ProfileFactory()
    Team.cached.get(pk=team.pk)
    Profile.cached.get(pk=profile.pk)
    out, err = run("cachestrat_invalidate", "--all", "--progress")
    count = len(cached_models())
    assert re.search(
        rf"Flushed {count} cached models: auth.User, .*testapp\.Club, .*testapp\.Profile.*$",
        out,
    )
    assert "auth.User" in out
    assert err.endswith(f"100% ({count}/{count})\n")
    assert count_queries(lambda: Team.cached.get(pk=team.pk))[1] == 1
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), r"Name a cached model \(app_label.Model \[pk ...\]\) or pass --all"),
        (("testapp.Team", "--all"), "Give either app_label.Model .* or --all"),
        (("testapp.Team", "abc"), r"Malformed pk 'abc' for testapp.Team: not a valid BigAutoField"),
        (("testapp.Team", "1", "2.5"), r"Malformed pk '2.5' for testapp.Team"),
        (("testapp.Team", ""), r"Malformed pk '' for testapp.Team: not a valid BigAutoField"),
        (("testapp.Item", "not-a-uuid"), r"Malformed pk 'not-a-uuid' for testapp.Item: .*UUID"),
        (
            ("testapp.Team", "9" * 20),
            r"Malformed pk '9{20}' for testapp.Team: .*less than or equal",
        ),
    ],
)
def test_invalidate_bad_input(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("cachestrat_invalidate", *args)


def test_invalidate_delivers_what_this_process_could_not_deliver_before(redis_client: Any) -> None:
    redis_client.set("cs:left-over", b"1")
    pending.add(["cs:left-over"], [], fallback=[])  # as if Redis had been down earlier
    run("cachestrat_invalidate", "testapp.Team", "1")
    assert not pending
    assert not redis_client.exists("cs:left-over")


def test_invalidate_with_redis_down_is_a_command_error(dead_redis: None) -> None:
    with pytest.raises(CommandError, match="Redis is unavailable, could not invalidate the rows"):
        run("cachestrat_invalidate", "testapp.Team", "1")


# cachestrat_warm


def test_warm_reads_each_batch_with_one_pk_query_and_one_row_query(redis_client: Any) -> None:
    teams = TeamFactory.create_batch(25)
    with CaptureQueriesContext(connection) as cold:
        out, err = run("cachestrat_warm", "testapp.Team", "--batch", "10")
    assert len(cold) == 3 * 2, [q["sql"] for q in cold.captured_queries]
    assert "Warmed testapp.Team: 25 rows in" in out
    assert "3 batches): 25 filled, 0 already cached." in out
    assert err == ""  # stderr is not a terminal: no progress bar
    assert all(is_cached(redis_client, Team, t.pk) for t in teams)
    with CaptureQueriesContext(connection) as warm:
        out, _ = run("cachestrat_warm", "testapp.Team", "--batch", "10")
    assert len(warm) == 3  # every row cached: only the pk queries
    assert "0 filled, 25 already cached." in out
    assert count_queries(lambda: Team.cached.get_many([t.pk for t in teams]))[1] == 0


def test_warm_pages_by_pk_without_offset() -> None:
    TeamFactory.create_batch(5)
    with CaptureQueriesContext(connection) as ctx:
        run("cachestrat_warm", "testapp.Team", "--batch", "2")
    pk_queries = [q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"]]
    assert len(pk_queries) == 3
    assert all("LIMIT 2" in sql and "OFFSET" not in sql for sql in pk_queries)
    assert '"id" >' not in pk_queries[0] and all('"id" >' in sql for sql in pk_queries[1:])


def test_warm_limit_warms_the_first_rows_by_pk(redis_client: Any) -> None:
    teams = sorted(TeamFactory.create_batch(12), key=lambda t: t.pk)
    out, _ = run("cachestrat_warm", "testapp.Team", "--batch", "4", "--limit", "6")
    assert "6 rows" in out and "2 batches)" in out
    assert [is_cached(redis_client, Team, t.pk) for t in teams] == [True] * 6 + [False] * 6


def test_warm_refills_rows_cached_before_a_flush(redis_client: Any) -> None:
    teams = TeamFactory.create_batch(3)
    run("cachestrat_warm", "testapp.Team")
    run("cachestrat_invalidate", "testapp.Team")
    out, _ = run("cachestrat_warm", "testapp.Team")
    assert "3 filled, 0 already cached" in out
    assert count_queries(lambda: Team.cached.get_many([t.pk for t in teams]))[1] == 0


def test_warm_progress_bar() -> None:
    TeamFactory.create_batch(7)
    _, err = run("cachestrat_warm", "testapp.Team", "--batch", "3", "--progress")
    frames = err.split("\r")[1:]
    assert [f.split("] ")[1].strip() for f in frames] == [
        "43% (3/7)",
        "86% (6/7)",
        "100% (7/7)",
    ]
    assert frames[-1] == f"Warming [{'#' * 30}] 100% (7/7)\n"
    _, err = run("cachestrat_warm", "testapp.Team", "--no-progress")
    assert err == ""


def test_warm_progress_bar_by_default_on_a_terminal_only() -> None:
    TeamFactory.create_batch(4)
    main, replica = os.openpty()
    try:
        with open(replica, "w", closefd=False) as terminal:
            call_command("cachestrat_warm", "testapp.Team", stdout=io.StringIO(), stderr=terminal)
        drawn = os.read(main, 4096).decode()
    finally:
        os.close(main)
        os.close(replica)
    assert "100% (4/4)" in drawn


def test_warm_an_empty_table() -> None:
    out, _ = run("cachestrat_warm", "testapp.Team")
    assert "Warmed testapp.Team: 0 rows" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch", "0"), "--batch: must be at least 1, got 0"),
        (("--batch", "-5"), "--batch: must be at least 1, got -5"),
        (("--batch", "ten"), "--batch: 'ten' is not an integer"),
        (("--limit", "0"), "--limit: must be at least 1, got 0"),
    ],
)
def test_warm_bad_numbers(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("cachestrat_warm", "testapp.Team", *args)


def test_warm_with_redis_down_is_a_command_error(dead_redis: None) -> None:
    TeamFactory()
    with pytest.raises(CommandError, match="Redis is unavailable, could not warm the cache"):
        run("cachestrat_warm", "testapp.Team")


# cachestrat_flush_counters


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_flush_counters_applies_pending_increments() -> None:
    profile = ProfileFactory()
    Profile.cached.incr(profile.pk, "likes", by=3)
    out, _ = run("cachestrat_flush_counters", "testapp.Profile")
    assert "testapp.profile stripe" in out
    assert "Flushed 1 batches: 1 rows, 3 increments, 0 dead letters in" in out
    profile.refresh_from_db()
    assert profile.likes == 3


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_flush_counters_json_and_progress() -> None:
    a, b = ProfileFactory(), ProfileFactory()
    Profile.cached.incr(a.pk, "likes", by=2)
    Profile.cached.incr(b.pk, "likes", by=5)
    out, err = run("cachestrat_flush_counters", "--json", "--progress")
    report = json.loads(out)
    assert report["totals"]["rows"] == 2
    assert report["totals"]["increments"] == 7
    assert report["totals"]["batches"] == len(report["batches"]) >= 1
    assert {b["model"] for b in report["batches"]} == {"testapp.profile"}
    assert err.endswith("100% (1/1)\n")  # one step per model with counters


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_flush_counters_reports_every_failed_stripe_after_flushing_the_rest() -> None:
    from django.db import connection

    from tests.writebehind.test_counter_flush_errors import FREEZE, THAW, two_stripes

    pks = two_stripes()
    for pk in pks:
        Profile.cached.incr(pk, "likes", by=1)
    with connection.cursor() as cursor:
        cursor.execute(FREEZE)
    try:
        with pytest.raises(CommandError, match=r"2 write-behind drain\(s\) failed: .*frozen"):
            run("cachestrat_flush_counters", "--json")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(THAW)


def test_flush_counters_nothing_pending() -> None:
    out, _ = run("cachestrat_flush_counters")
    assert "Flushed 0 batches" in out


def test_flush_counters_of_a_model_without_counters() -> None:
    with pytest.raises(CommandError, match=r"testapp.Team has no write-behind counters"):
        run("cachestrat_flush_counters", "testapp.Team")


# cachestrat_inspect


def field_lines(out: str) -> dict[str, str]:
    """``{field: line}`` of the field table."""
    lines = {}
    for line in out.splitlines():
        match = re.match(r"^[* ] (\w+)\s{2}", line)
        if match:
            lines[match.group(1)] = line
    return lines


def fact(out: str, name: str) -> str:
    """The text of a header line, such as ``cached`` or ``lease``."""
    match = re.search(rf"^  {re.escape(name)}\s+(.*)$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


def test_inspect_a_cached_row_that_matches() -> None:
    profile = ProfileFactory(username="jane", age=41)
    Profile.cached.get(username="jane")
    out, _ = run("cachestrat_inspect", "testapp.Profile", str(profile.pk))
    assert out.startswith(f"testapp.Profile pk={profile.pk}\n")
    assert re.fullmatch(rf"cs:testapp\.profile:\{{{profile.pk}\}}", fact(out, "key"))
    assert re.fullmatch(
        r"Cached row, served to reads\. Its database read took [\d,]+ µs\.", fact(out, "cached")
    )
    assert re.fullmatch(r"[\d,]+\.\d s", fact(out, "TTL left"))
    assert fact(out, "lease") == "free"
    assert fact(out, "database") == "row found"
    lines = field_lines(out)
    assert set(lines) >= {"id", "username", "age", "balance", "data", "ref", "team_id"}
    assert not any(line.startswith("*") for line in lines.values())
    assert re.fullmatch(r"  username\s+jane\s+jane", lines["username"])
    assert "The cached row matches the database." in out
    assert re.search(
        rf"username=jane  cs:testapp\.profile:username:\{{jane\}}  "
        rf"-> pk {profile.pk}, TTL [\d,.]+ s",
        out,
    )


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_inspect_marks_fields_changed_behind_the_cache() -> None:
    profile = ProfileFactory(username="old", age=20)
    Profile.cached.get(pk=profile.pk)
    raw_update("UPDATE testapp_profile SET age = 21, bio = 'x' WHERE id = %s", (profile.pk,))
    assert Profile.cached.get(pk=profile.pk).age == 20  # the cache is indeed stale
    out, _ = run("cachestrat_inspect", "testapp.Profile", str(profile.pk))
    marked = {name for name, line in field_lines(out).items() if line.startswith("*")}
    assert marked == {"age", "bio"}
    assert re.search(r"^\* age\s+20\s+21$", out, re.MULTILINE)
    assert "2 fields differ (*)" in out
    assert f"Fix: manage.py cachestrat_invalidate testapp.Profile {profile.pk}" in out


def test_inspect_a_row_not_cached() -> None:
    profile = ProfileFactory()
    out, _ = run("cachestrat_inspect", "testapp.Profile", str(profile.pk))
    assert fact(out, "cached") == STATE_TEXT["missing"]
    assert fact(out, "TTL left") == "-"
    assert "Only the database row is shown: no cached row is served for it." in out
    lines = field_lines(out)
    assert not any(line.startswith("*") for line in lines.values())
    assert re.fullmatch(rf"  username\s+-\s+{profile.username}", lines["username"])
    assert re.search(rf"username={profile.username}\s+\S+  {STATE_TEXT['missing']}$", out)


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_inspect_a_cached_row_deleted_behind_the_cache() -> None:
    team = TeamFactory(name="gone")
    Team.cached.get(pk=team.pk)
    raw_update("DELETE FROM testapp_team WHERE id = %s", (team.pk,))
    out, _ = run("cachestrat_inspect", "testapp.Team", str(team.pk))
    assert fact(out, "database") == "no row with this pk"
    assert re.fullmatch(r"  name\s+gone\s+-", field_lines(out)["name"])
    assert "The database has no such row: the cached row is stale." in out


def test_inspect_a_cached_absence_and_a_flushed_row() -> None:
    with pytest.raises(Team.DoesNotExist):
        Team.cached.get(pk=424242)
    out, _ = run("cachestrat_inspect", "testapp.Team", "424242")
    assert fact(out, "cached") == STATE_TEXT["absent"]
    assert fact(out, "database") == "no row with this pk"
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    Team.cached.flush()
    out, _ = run("cachestrat_inspect", "testapp.Team", str(team.pk))
    assert fact(out, "cached") == STATE_TEXT["old_generation"]
    assert "The cached row is no longer served (the model was flushed since): a miss." in out


def test_inspect_an_unreadable_value_and_a_voided_absence(redis_client: Any) -> None:
    team = TeamFactory()
    redis_client.set(plan_for(Team).keys.row(team.pk), b"not msgpack \xc1")
    out, _ = run("cachestrat_inspect", "testapp.Team", str(team.pk))
    assert fact(out, "cached") == STATE_TEXT["corrupt"]
    assert "Only the database row is shown" in out
    with pytest.raises(Team.DoesNotExist):
        Team.cached.get(pk=team.pk + 100)
    TeamFactory(id=team.pk + 100)  # an insert voids every cached absence of the model
    out, _ = run("cachestrat_inspect", "testapp.Team", str(team.pk + 100))
    assert fact(out, "cached") == STATE_TEXT["old_absence"]


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_inspect_a_lookup_cached_as_absent() -> None:
    profile = ProfileFactory(username="ann")
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="bob")  # caches "no such username"
    raw_update("UPDATE testapp_profile SET username = 'bob' WHERE id = %s", (profile.pk,))
    out, _ = run("cachestrat_inspect", "testapp.Profile", str(profile.pk))
    assert re.search(rf"username=bob\s+\S+  {STATE_TEXT['absent']}, TTL [\d.]+ s", out)


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_inspect_shows_a_held_lease_and_pending_increments(redis_client: Any) -> None:
    profile = ProfileFactory()
    lease = plan_for(Profile).keys.lease(plan_for(Profile).keys.row(profile.pk))
    redis_client.set(lease, "feedbeef", px=5000)
    Profile.cached.incr(profile.pk, "likes", by=4)
    out, _ = run("cachestrat_inspect", "testapp.Profile", str(profile.pk))
    assert re.fullmatch(r"held: a reader is filling it \(expires in [\d.]+ s\)", fact(out, "lease"))
    assert "Pending write-behind increments (reads add them): likes +4" in out


def test_inspect_a_uuid_pk() -> None:
    item = ItemFactory(code="abc")
    Item.cached.get(pk=item.pk)
    out, _ = run("cachestrat_inspect", "testapp.Item", str(item.pk))
    assert fact(out, "cached").startswith(STATE_TEXT["row"])
    assert str(item.pk) in field_lines(out)["id"]
    assert f"-> pk {item.pk}" not in out  # the lookup was never read: not cached


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("testapp.Profile", "x1"), r"Malformed pk 'x1' for testapp.Profile: not a valid"),
        (("testapp.Item", "42"), r"Malformed pk '42' for testapp.Item: .*UUID"),
    ],
)
def test_inspect_malformed_pk(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("cachestrat_inspect", *args)


def test_inspect_with_redis_down_is_a_command_error(dead_redis: None) -> None:
    team = TeamFactory()
    with pytest.raises(CommandError, match="Redis is unavailable, could not inspect the cache"):
        run("cachestrat_inspect", "testapp.Team", str(team.pk))
