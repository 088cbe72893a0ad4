"""Key text: one key per value the database treats as equal, and never one for two values."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest

from django_cachestrat.keys import KeySpace, key_part
from tests.factories import ProfileFactory
from tests.testapp.models import Club, Membership

pytestmark = pytest.mark.django_db(transaction=True)

UTC = datetime.UTC
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))


@pytest.mark.parametrize(
    "equal",
    [
        (
            datetime.datetime(2026, 1, 1, 8, tzinfo=UTC),
            datetime.datetime(2026, 1, 1, 10, tzinfo=PLUS_TWO),
            datetime.datetime(2026, 1, 1, 8),  # naive: the default time zone, UTC in the tests
        ),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00"), decimal.Decimal("1")),
        (decimal.Decimal("100"), decimal.Decimal("1E+2")),
        (decimal.Decimal("0"), decimal.Decimal("-0.00")),
        (0.0, -0.0),
    ],
)
def test_values_the_database_finds_equal_share_one_key(equal: tuple[object, ...]) -> None:
    keys = KeySpace("cs", Membership)
    assert len({keys.lookup("key", value) for value in equal}) == 1


def test_none_names_no_key() -> None:
    with pytest.raises(ValueError, match="None"):
        key_part(None)


def test_plain_values_keep_their_text() -> None:
    # Write-behind stripe members are built from this text: it must not change for pks.
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert [key_part(v) for v in (42, "jane", ref)] == ["42", "jane", ref.hex]


def _membership(key: str | None) -> Membership:
    return Membership.objects.create(
        club=Club.objects.create(name="c"), profile=ProfileFactory(), key=key
    )


def test_none_and_the_text_none_are_two_lookups() -> None:
    named = _membership("None")
    for _ in range(2):  # a miss, then whatever was cached
        with pytest.raises(Membership.DoesNotExist):
            Membership.cached.get(key=None)
        assert Membership.cached.get(key="None").pk == named.pk


def test_a_lookup_of_none_finds_the_row_the_orm_finds() -> None:
    empty = _membership(None)
    for _ in range(2):
        assert Membership.cached.get(key=None).pk == empty.pk


def test_a_stripe_member_names_its_counter_and_pk_even_when_the_pk_has_colons():
    from django_cachestrat.keys import claim_parts, member_parts, stripe_member

    assert stripe_member("likes", 42) == "likes:42"
    assert member_parts(stripe_member("likes", "a:b:c")) == ("likes", "a:b:c")
    assert claim_parts(b"2c9f:1733461200123") == ("2c9f", 1733461200123)
