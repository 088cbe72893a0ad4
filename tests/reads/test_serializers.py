"""Payloads: every supported field type round-trips; anything unreadable is a miss, removed."""

from __future__ import annotations

import datetime
import decimal
import json
import pickle
import uuid

import msgpack
import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import override_settings

from django_cachestrat.keys import KeySpace, schema_hash
from django_cachestrat.plan import plan_for
from django_cachestrat.serializers import HEADER, ROW, Codec, CorruptPayload
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries
from tests.testapp.models import Profile, Team

pytestmark = pytest.mark.django_db

EVERY_TYPE = {
    "email": "zoë@example.com",
    "bio": "long text ✓ " * 50,
    "age": -42,
    "score": 2**62,
    "likes": 7,
    "balance": decimal.Decimal("-1234567.89"),
    "active": False,
    "born": datetime.date(1969, 7, 20),
    "last_seen": datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC),
    "wakes_at": datetime.time(6, 30, 15, 250),
    "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "ratio": 0.1 + 0.2,
    "data": {"a": [1, 2.5, None, True, "x"], "nested": {"k": "v"}, "big": 10**30},
    "blob": b"\x00\xffbinary",
    "idle": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "status": Profile.Status.BANNED,
}


def _fields(obj: Profile) -> dict[str, object]:
    values = {name: getattr(obj, name) for name in EVERY_TYPE}
    values["blob"] = bytes(values["blob"])
    values["team_id"] = obj.team_id
    return values


def test_every_field_type_round_trips_exactly():
    team = TeamFactory()
    profile = ProfileFactory(team=team, **EVERY_TYPE)
    from_db = Profile.objects.get(pk=profile.pk)
    Profile.cached.get(pk=profile.pk)
    cached, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert n == 0
    assert _fields(cached) == _fields(from_db)
    assert type(cached.balance) is decimal.Decimal and type(cached.ref) is uuid.UUID
    assert cached.last_seen.tzinfo is not None


def test_nulls_round_trip():
    profile = ProfileFactory(born=None, last_seen=None, wakes_at=None, blob=None, idle=None)
    Profile.cached.get(pk=profile.pk)
    cached = Profile.cached.get(pk=profile.pk)
    assert (cached.born, cached.last_seen, cached.wakes_at, cached.blob, cached.idle) == (None,) * 5
    assert cached.team_id is None


@override_settings(USE_TZ=False)
def test_naive_datetimes_round_trip():
    codec = Codec(Profile)
    naive = ProfileFactory.build(pk=1, last_seen=datetime.datetime(2026, 5, 6, 7, 8, 9))
    payload = codec.load(codec.dump_row(naive, b"", 0))
    index = codec.attnames.index("last_seen")
    assert payload.values[index] == datetime.datetime(2026, 5, 6, 7, 8, 9)


def test_payload_is_compact_and_never_pickle(redis_client):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    raw = redis_client.get(plan_for(Profile).keys.row(profile.pk))
    assert msgpack.unpackb(raw)[0] == ROW
    assert len(raw) < len(pickle.dumps(Profile.objects.get(pk=profile.pk))) / 2


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x93\x01",  # truncated msgpack
        b"garbage that is not msgpack \xc1",
        msgpack.packb({"foreign": "dict"}),
        msgpack.packb([1, 2, 3, 4]),  # a list, but not one of ours
        pickle.dumps({"some": "pickle"}),
    ],
)
def test_corrupt_or_foreign_payload_is_a_miss_and_is_replaced(redis_client, bad):
    profile = ProfileFactory(username="victim")
    key = plan_for(Profile).keys.row(profile.pk)
    redis_client.set(key, bad)
    got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert (got.username, n) == ("victim", 1)
    assert redis_client.get(key) != bad
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0


def test_truncated_real_payload_is_a_miss(redis_client):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    key = plan_for(Profile).keys.row(profile.pk)
    redis_client.set(key, redis_client.get(key)[:-5])
    got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert (got.pk, n) == (profile.pk, 1)


def test_payload_of_another_width_is_a_miss(redis_client):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    key = plan_for(Profile).keys.row(profile.pk)
    items = msgpack.unpackb(redis_client.get(key))
    redis_client.set(key, msgpack.packb([*items, "extra column"]))
    got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert (got.pk, n) == (profile.pk, 1)


def test_value_of_the_wrong_type_inside_a_payload_is_a_miss(redis_client):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    key = plan_for(Profile).keys.row(profile.pk)
    items = msgpack.unpackb(redis_client.get(key))
    items[HEADER + Codec(Profile).attnames.index("born")] = "not an ordinal"
    redis_client.set(key, msgpack.packb(items))
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 1


def test_corrupt_lookup_pointer_is_a_miss(redis_client):
    profile = ProfileFactory(username="pointer")
    key = plan_for(Profile).keys.lookup("username", "pointer")
    redis_client.set(key, b"\x00\x01junk")
    assert Profile.cached.get(username="pointer").pk == profile.pk


def test_schema_change_changes_the_schema_every_payload_names():
    before = schema_hash(Team)
    field = Team._meta.get_field("name")
    original = field.column
    field.column = "renamed"
    try:
        assert schema_hash(Team) != before
        assert Codec(Team).schema != before
        assert KeySpace("cs", Team).row(1) == "cs:testapp.team:{1}"  # one key, any schema
    finally:
        field.column = original


def test_old_schema_rows_are_never_read(redis_client):
    team = TeamFactory(name="new")
    key = plan_for(Team).keys.row(team.pk)
    old = Codec(Team)
    old.schema = "00000000"
    redis_client.set(key, old.dump_row(Team(pk=team.pk, name="old"), b"", 0))
    got, n = count_queries(lambda: Team.cached.get(pk=team.pk))
    assert (got.name, n) == ("new", 1)
    assert Codec(Team).load(redis_client.get(key)).values[1] == "new"  # replaced


def test_codec_rejects_unknown_kinds():
    with pytest.raises(CorruptPayload):
        Codec(Team).load(msgpack.packb([999, Codec(Team).schema, b"", 0, 1, "x"]))


def test_unencodable_value_is_served_but_not_cached(redis_client, monkeypatch):
    profile = ProfileFactory()
    plan = plan_for(Profile)
    # A field type the codec does not know, holding a value msgpack cannot encode.
    monkeypatch.setattr(plan.codec, "encoders", [(HEADER + plan.codec.attnames.index("age"), set)])
    assert Profile.cached.get(pk=profile.pk).pk == profile.pk
    assert redis_client.get(plan.keys.row(profile.pk)) is None
    assert redis_client.get(plan.keys.lease(plan.keys.row(profile.pk))) is None  # given back


class DecimalDecoder(json.JSONDecoder):
    """Parses JSON numbers with a fraction as ``Decimal``, as money-handling projects do."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, parse_float=decimal.Decimal, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def decimal_json(monkeypatch):
    field = Profile._meta.get_field("data")
    monkeypatch.setattr(field, "encoder", DjangoJSONEncoder)
    monkeypatch.setattr(field, "decoder", DecimalDecoder)


JSON_VALUES = [
    {"price": 1.1},
    {"price": "1.1"},
    {"price": decimal.Decimal("2.50")},  # DjangoJSONEncoder writes it as a string
    [1.10, 2, "x", {"n": None, "t": True}],
    2.5,
    "text",
    {"when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)},
]


@pytest.mark.parametrize("data", JSON_VALUES)
def test_json_with_a_custom_encoder_and_decoder_reads_back_what_the_database_gives(
    decimal_json, data
):
    profile = ProfileFactory(data=data)
    from_db = Profile.objects.get(pk=profile.pk).data
    Profile.cached.get(pk=profile.pk)
    cached, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert n == 0
    assert repr(cached.data) == repr(from_db)


@pytest.mark.parametrize("data", [*JSON_VALUES[:2], JSON_VALUES[3], 2.5, "text", {"big": 10**30}])
def test_json_without_a_custom_decoder_reads_back_what_the_database_gives(data):
    profile = ProfileFactory(data=data)
    from_db = Profile.objects.get(pk=profile.pk).data
    Profile.cached.get(pk=profile.pk)
    cached, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert n == 0
    assert repr(cached.data) == repr(from_db)


def test_payloads_of_the_previous_layout_are_misses(redis_client, monkeypatch):
    """Format 3 wrote the kind as 0xC51, the schema hash as 8 hex digits and the generation
    as Redis stores it: such a payload, even of the current generation, is a miss."""
    from django_cachestrat import keys
    from django_cachestrat.transactions import scope_tag

    team = TeamFactory(name="new")
    Team.cached.get(pk=team.pk)  # the generation exists
    plan = plan_for(Team)
    stored = redis_client.get(plan.keys.generation)
    monkeypatch.setattr(keys, "FORMAT_VERSION", "3")
    old_schema = schema_hash(Team).hex()  # the first 8 hex digits of the same SHA-1
    monkeypatch.undo()
    tag = stored + scope_tag("default", detect=True)  # the test's block, as reads tag it
    old = msgpack.packb([0xC51, old_schema, tag, 0, 0, team.pk, "old"], use_bin_type=True)
    redis_client.set(plan.keys.row(team.pk), old)
    got, n = count_queries(lambda: Team.cached.get(pk=team.pk))
    assert (got.name, n) == ("new", 1)
    assert Codec(Team).load(redis_client.get(plan.keys.row(team.pk))).values[1] == "new"
