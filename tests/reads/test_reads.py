"""Cache-aside reads: by pk, by unique lookup, many at once, async, negative caching."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import override_settings

from django_cachestrat.plan import plan_for
from tests.factories import ItemFactory, ProfileFactory
from tests.helpers import assert_cached, count_queries, queries_raising
from tests.testapp.models import Item, Profile, ProfileProxy

pytestmark = pytest.mark.django_db


def test_get_by_pk_reads_the_database_once():
    profile = ProfileFactory(username="jane")
    got = assert_cached(lambda: Profile.cached.get(pk=profile.pk))
    assert got.username == "jane"
    assert got._state.adding is False
    assert got._state.db == "default"


def test_pk_given_as_text_or_by_field_name_hits_the_same_key():
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    for spelling in ({"pk": str(profile.pk)}, {"id": profile.pk}):
        got, n = count_queries(lambda s=spelling: Profile.cached.get(**s))
        assert (got.pk, n) == (profile.pk, 0)


def test_uuid_primary_key():
    item = ItemFactory()
    got = assert_cached(lambda: Item.cached.get(pk=str(item.pk)))
    assert got.pk == item.pk and isinstance(got.pk, uuid.UUID)


def test_missing_row_raises_and_is_cached_negatively():
    def read() -> str:
        with pytest.raises(Profile.DoesNotExist) as info:
            Profile.cached.get(pk=999_999)
        return str(info.value)

    message = assert_cached(read)
    assert "999999" in message


def test_negative_entry_is_dropped_when_the_row_is_created():
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="late")
    ProfileFactory(username="late")
    assert Profile.cached.get(username="late").username == "late"


@override_settings(CACHESTRAT={"NEGATIVE_TIMEOUT": 0})
def test_negative_caching_can_be_switched_off():
    for _ in range(2):
        assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(pk=5)) == 1


def test_get_by_lookup_then_served_from_cache():
    profile = ProfileFactory(username="ann")
    first, n1 = count_queries(lambda: Profile.cached.get(username="ann"))
    second, n2 = count_queries(lambda: Profile.cached.get(username="ann"))
    assert first.pk == second.pk == profile.pk
    assert n1 == 2  # the pk by username, then the row under its own lease
    assert n2 == 0


def test_get_by_lookup_shares_the_row_with_get_by_pk():
    profile = ProfileFactory(username="bob")
    Profile.cached.get(pk=profile.pk)
    got, n = count_queries(lambda: Profile.cached.get(username="bob"))
    assert (got.pk, n) == (profile.pk, 1)


def test_missing_lookup_raises_does_not_exist():
    with pytest.raises(Profile.DoesNotExist, match="username='ghost'"):
        Profile.cached.get(username="ghost")
    assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(username="ghost")) == 0


def test_get_many_returns_present_rows_and_omits_absent_ones():
    a, b, c = ProfileFactory.create_batch(3)
    got, n = count_queries(lambda: Profile.cached.get_many([a.pk, b.pk, 424242, c.pk]))
    assert sorted(got) == sorted([a.pk, b.pk, c.pk]) and n == 1
    again, n = count_queries(lambda: Profile.cached.get_many([c.pk, 424242, a.pk, b.pk]))
    assert n == 0
    assert {pk: p.username for pk, p in again.items()} == {p.pk: p.username for p in (a, b, c)}


def test_get_many_fills_only_the_misses(redis_client):
    a, b = ProfileFactory.create_batch(2)
    Profile.cached.get(pk=a.pk)
    with count_queries_sql() as sql:
        Profile.cached.get_many([a.pk, b.pk])
    assert len(sql) == 1 and str(b.pk) in sql[0] and f"{a.pk}," not in sql[0]


def test_get_many_of_nothing_asks_nothing():
    assert count_queries(lambda: Profile.cached.get_many([])) == ({}, 0)


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_async_twins():
    profile = ProfileFactory(username="async")

    async def main() -> tuple[Profile, dict[int, Profile], Profile]:
        one = await Profile.cached.aget(pk=profile.pk)
        many = await Profile.cached.aget_many([profile.pk])
        by_name = await Profile.cached.aget(username="async")
        await sync_to_async(connections.close_all)()  # the worker thread's connection
        return one, many, by_name

    one, many, by_name = asyncio.run(main())
    assert one.pk == by_name.pk == profile.pk and list(many) == [profile.pk]


def test_proxy_model_shares_rows_and_returns_proxy_instances():
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    got, n = count_queries(lambda: ProfileProxy.cached.get(pk=profile.pk))
    assert n == 0 and type(got) is ProfileProxy


def test_model_named_in_settings_gets_the_same_api():
    user = User.objects.create_user("jane", password="x")
    got = assert_cached(lambda: User.cached.get(pk=user.pk))
    assert got.check_password("x")
    assert User.cached.get(username="jane").pk == user.pk


def test_ttl_is_jittered_within_bounds(redis_client):
    profiles = ProfileFactory.create_batch(30)
    Profile.cached.get_many([p.pk for p in profiles])
    plan = plan_for(Profile)
    ttls = [redis_client.pttl(plan.keys.row(p.pk)) / 1000 for p in profiles]
    assert all(3240 - 1 <= t <= 3960 for t in ttls)
    assert max(ttls) - min(ttls) > 60  # spread out, not one expiry for all


def test_per_model_timeout(redis_client):
    item = ItemFactory()
    Item.cached.get(pk=item.pk)
    ttl = redis_client.pttl(plan_for(Item).keys.row(item.pk)) / 1000
    assert 54 - 1 <= ttl <= 66


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Profile.cached.get(), "exactly one keyword"),
        (lambda: Profile.cached.get(pk=1, username="x"), "exactly one keyword"),
        (lambda: Profile.cached.get(email="a@b.c"), "'email' is not the pk or a cached lookup"),
        (lambda: Profile.cached.get_many(5), "iterable of pks"),
        (lambda: Profile.cached.get_many("12"), "iterable of pks"),
    ],
)
def test_bad_calls_raise_type_errors_naming_the_problem(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_bad_pk_value_raises_value_error():
    with pytest.raises(ValueError, match="'abc' is not a valid value for BigAutoField"):
        Profile.cached.get(pk="abc")
    with pytest.raises(ValueError, match="UUIDField"):
        Item.cached.get(pk="not-a-uuid")


def test_cached_is_not_available_on_instances():
    profile = ProfileFactory.build()
    with pytest.raises(AttributeError, match=r"Profile\.cached"):
        profile.cached  # noqa: B018


def count_queries_sql():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    class Ctx(CaptureQueriesContext):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.sql[:] = [q["sql"] for q in self.captured_queries]

        def __enter__(self):
            super().__enter__()
            self.sql: list[str] = []
            return self.sql

    return Ctx(connection)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a command or a pipeline was written to Redis (each is a round trip);
    the commands still go to the real server."""
    from redis.connection import AbstractConnection

    sent = [0]
    send = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, *args: object, **kwargs: object) -> None:
        sent[0] += 1
        send(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.mark.parametrize("exists", [True, False])
def test_a_miss_makes_three_round_trips(round_trips: list[int], exists: bool) -> None:
    """The read, the lease with the absence generation beside it, and the fill (Item has
    no write-behind counters, whose pending counts would be read too)."""
    pk = ItemFactory().pk if exists else uuid.uuid4()
    Item.cached.get_many([pk])  # the generations exist, as in any warm process
    Item.cached.invalidate(pk)
    round_trips[0] = 0
    if exists:
        assert Item.cached.get(pk=pk).pk == pk
    else:
        with pytest.raises(Item.DoesNotExist):
            Item.cached.get(pk=pk)
    assert round_trips[0] == 3
    assert count_queries(lambda: Item.cached.get_many([pk]))[1] == 0  # and it was filled


def _concrete_values(obj: object) -> dict[str, object]:
    values = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}  # type: ignore[attr-defined]
    return {k: bytes(v) if isinstance(v, memoryview) else v for k, v in values.items()}


def test_a_one_row_fill_reads_the_row_as_the_orm_does() -> None:
    """One-row fills run SQL compiled once (fills.py): every field type, a UUID pk and a
    multi-table child come back as ``objects.get`` returns them, from the database, and
    then from the cache."""
    import datetime
    import decimal

    from tests.testapp.models import Restaurant

    profile = ProfileFactory(
        balance=decimal.Decimal("12.50"),
        born=datetime.date(1990, 5, 17),
        last_seen=datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
        wakes_at=datetime.time(6, 30),
        ratio=0.25,
        data={"a": [1, 2.5, None], "b": {"c": "é"}},
        blob=b"\x00\xff",
        idle=datetime.timedelta(minutes=3),
    )
    rows = [
        (Profile, profile.pk),
        (Item, ItemFactory().pk),
        (Restaurant, Restaurant.objects.create(name="Chez", stars=3).pk),
    ]
    for model, pk in rows:
        expected = _concrete_values(model.objects.get(pk=pk))
        model.cached.invalidate(pk)
        for queries in (1, 0):  # the fill, then a hit of what it stored
            got, n = count_queries(lambda m=model, p=pk: m.cached.get(pk=p))
            assert (n, _concrete_values(got)) == (queries, expected), model
            assert (got._state.db, got._state.adding) == ("default", False)
    with pytest.raises(Item.DoesNotExist):  # no row: an empty result, cached as absent
        Item.cached.get(pk=uuid.uuid4())
