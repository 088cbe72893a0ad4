"""Inside TestCase and django_db transactions the cache serves hits as in production, and
nothing one test cached or changed is seen by the next."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import TestCase

from django_cachestrat import drain as write_behind
from django_cachestrat.testing import assert_served_from_cache, count_reads
from tests.factories import ProfileFactory
from tests.helpers import assert_cached, count_queries
from tests.testapp.models import Item, Profile

# Rows with pks of their own: a row cached in one test must not be served in the next,
# where the same pk names no row, or another one.
LEAKY_PK = 424_242
ABSENT_PK = 424_243


class CachedInsideTestCase(TestCase):
    """Django's TestCase: class-level and per-test atomic blocks, never committed."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.profile = ProfileFactory(username="jane", age=30)

    def test_second_read_is_a_hit(self) -> None:
        profile = ProfileFactory(age=1)
        assert_cached(lambda: Profile.cached.get(pk=profile.pk))

    def test_rows_from_set_up_test_data_are_cached(self) -> None:
        assert_cached(lambda: Profile.cached.get(pk=self.profile.pk))
        assert_cached(lambda: Profile.cached.get(username="jane").pk)

    def test_transparent_get_is_a_hit(self) -> None:
        with self.settings(CACHESTRAT={"MODELS": {"testapp.Team": {"transparent": True}}}):
            from tests.testapp.models import Team

            team = Team.objects.create(name="blue")
            assert_cached(lambda: Team.objects.get(pk=team.pk))

    def test_a_write_is_seen_at_once(self) -> None:
        Profile.cached.get(pk=self.profile.pk)
        Profile.objects.filter(pk=self.profile.pk).update(age=31)
        assert Profile.cached.get(pk=self.profile.pk).age == 31
        with assert_served_from_cache(Profile):
            assert Profile.cached.get(pk=self.profile.pk).age == 31

    def test_own_atomic_block_acts_at_its_commit(self) -> None:
        Profile.cached.get(pk=self.profile.pk)
        with transaction.atomic():
            self.profile.age = 40
            self.profile.save()
            # Read your writes: the changed row bypasses the cache until the block ends.
            assert Profile.cached.get(pk=self.profile.pk).age == 40
        assert Profile.cached.get(pk=self.profile.pk).age == 40
        with assert_served_from_cache(Profile):
            Profile.cached.get(pk=self.profile.pk)

    def test_own_atomic_block_rolled_back_leaves_the_cache_alone(self) -> None:
        Profile.cached.get(pk=self.profile.pk)
        with pytest.raises(RuntimeError), transaction.atomic():
            self.profile.age = 50
            self.profile.save()
            raise RuntimeError("roll back")
        with assert_served_from_cache(Profile):
            assert Profile.cached.get(pk=self.profile.pk).age == 30

    def test_on_commit_callbacks_are_only_the_users(self) -> None:
        seen: list[str] = []
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            with transaction.atomic():
                self.profile.age = 60
                self.profile.save()
                transaction.on_commit(lambda: seen.append("mine"))
            Profile.cached.get(pk=self.profile.pk)
        assert seen == ["mine"]
        assert len(callbacks) == 1
        with assert_served_from_cache(Profile):
            assert Profile.cached.get(pk=self.profile.pk).age == 60


# The same scenario twice in each order: whatever the first test cached, invalidated or
# incremented inside its transaction is gone for the one after it.


def _pollute() -> None:
    profile = ProfileFactory(pk=LEAKY_PK, username="leaky", age=7)
    Item.objects.create(code="leaky-code")
    assert Profile.cached.get(pk=LEAKY_PK).age == 7  # filled
    assert Profile.cached.get(username="leaky").pk == LEAKY_PK  # lookup filled
    assert Item.cached.get(code="leaky-code")
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=ABSENT_PK)  # absence cached
    Profile.cached.incr(LEAKY_PK, "likes", by=5)
    assert Profile.cached.get(pk=LEAKY_PK).likes == 5
    with assert_served_from_cache(Profile):
        Profile.cached.get(pk=profile.pk)


def _check_clean() -> None:
    for lookup in ({"pk": LEAKY_PK}, {"username": "leaky"}):
        with pytest.raises(Profile.DoesNotExist):
            Profile.cached.get(**lookup)
    with pytest.raises(Item.DoesNotExist):
        Item.cached.get(code="leaky-code")
    # The row that was absent exists now, and the row that existed has other values.
    ProfileFactory(pk=ABSENT_PK, username="present")
    assert Profile.cached.get(pk=ABSENT_PK).username == "present"
    ProfileFactory(pk=LEAKY_PK, username="other", age=1)
    with count_reads() as reads:
        row = Profile.cached.get(pk=LEAKY_PK)
    assert (row.username, row.age, row.likes) == ("other", 1, 0)
    assert reads.misses(Profile) == 1
    # No increment of the rolled-back test is left to flush into this row.
    write_behind.drain_model(Profile)
    row.refresh_from_db()
    assert row.likes == 0


@pytest.mark.keep_redis
@pytest.mark.django_db
def test_leak_1_clean() -> None:
    _check_clean()


@pytest.mark.keep_redis
@pytest.mark.django_db
def test_leak_2_pollute() -> None:
    _pollute()


@pytest.mark.keep_redis
@pytest.mark.django_db
def test_leak_3_clean_after_pollute() -> None:
    _check_clean()


@pytest.mark.keep_redis
@pytest.mark.django_db
def test_leak_4_pollute_after_clean() -> None:
    _pollute()


@pytest.mark.keep_redis
@pytest.mark.django_db
def test_leak_5_clean_after_pollute() -> None:
    _check_clean()


class LeakAcrossTestCaseTests(TestCase):
    """The same in Django's TestCase (methods run in alphabetical order)."""

    def test_1_pollute(self) -> None:
        _pollute()

    def test_2_clean(self) -> None:
        _check_clean()

    def test_3_pollute(self) -> None:
        _pollute()

    def test_4_clean(self) -> None:
        _check_clean()


@pytest.mark.django_db
def test_django_db_second_read_runs_no_query() -> None:
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    _, queries = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert queries == 0


@pytest.mark.django_db(transaction=True)
def test_transactional_db_still_commits_and_invalidates() -> None:
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    with transaction.atomic():
        Profile.objects.filter(pk=profile.pk).update(age=2)
    assert Profile.cached.get(pk=profile.pk).age == 2


class RolledBackTestBlockTests(TestCase):
    """What one test block filled is not believed once it is rolled back; a naive cache
    (Django's cache API with the row stored as is) keeps serving it."""

    def _test_block(self) -> transaction.Atomic:
        block = transaction.atomic()
        block._from_testcase = True  # as TestCase marks its own per-test blocks
        return block

    def test_a_row_filled_in_a_rolled_back_test_block_is_not_served(self) -> None:
        from django.core.cache import cache

        with pytest.raises(RuntimeError), self._test_block():
            profile = ProfileFactory(pk=LEAKY_PK, age=3)
            assert Profile.cached.get(pk=LEAKY_PK).age == 3
            cache.set(f"naive:{LEAKY_PK}", profile)
            raise RuntimeError("the test ends: Django rolls its block back")
        assert cache.get(f"naive:{LEAKY_PK}") is not None  # the naive cache leaks it
        with pytest.raises(Profile.DoesNotExist):
            Profile.cached.get(pk=LEAKY_PK)


class IncrementsInsideTestCase(TestCase):
    """Increments made in a test join its transaction: exact inside it, gone after it."""

    @classmethod
    def setUpTestData(cls) -> None:
        cls.profile = ProfileFactory(likes=0)
        Profile.cached.incr(cls.profile.pk, "likes", by=3)

    def test_1_an_increment_adds_to_the_class_ones(self) -> None:
        Profile.cached.incr(self.profile.pk, "likes", by=1)
        assert Profile.cached.get(pk=self.profile.pk).likes == 4

    def test_2_the_class_increments_are_still_there(self) -> None:
        assert Profile.cached.get(pk=self.profile.pk).likes == 3
        with transaction.atomic():
            Profile.cached.incr(self.profile.pk, "likes", by=2)
        assert Profile.cached.get(pk=self.profile.pk).likes == 5


class CommitHooksInsideTestCase(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.profile = ProfileFactory(age=30)

    def test_capturing_callbacks_inside_a_block_keeps_its_writes_out_of_the_cache(self) -> None:
        Profile.cached.get(pk=self.profile.pk)
        with pytest.raises(RuntimeError), transaction.atomic():
            with self.captureOnCommitCallbacks(execute=True):
                Profile.objects.filter(pk=self.profile.pk).update(age=99)
            assert Profile.cached.get(pk=self.profile.pk).age == 99  # its own write
            raise RuntimeError("roll back")
        assert Profile.cached.get(pk=self.profile.pk).age == 30

    def test_a_failing_receiver_does_not_break_the_block(self) -> None:
        from django_cachestrat.signals import invalidated

        def fails(**kwargs: object) -> None:
            raise ValueError("a receiver's bug")

        invalidated.connect(fails)
        try:
            with transaction.atomic():
                self.profile.age = 31
                self.profile.save()
        finally:
            invalidated.disconnect(fails)
        assert Profile.cached.get(pk=self.profile.pk).age == 31


# A test that commits for real (transaction=True): the table flush that ends it takes its
# pending increments too, so the next test's row with the same pk starts at 0.


@pytest.mark.keep_redis
@pytest.mark.django_db(transaction=True)
def test_truncate_1_pending_increments_of_a_committed_test() -> None:
    ProfileFactory(pk=LEAKY_PK, username="committed")
    Profile.cached.incr(LEAKY_PK, "likes", by=7)
    assert Profile.cached.get(pk=LEAKY_PK).likes == 7


@pytest.mark.keep_redis
@pytest.mark.django_db(transaction=True)
def test_truncate_2_are_gone_with_the_table_flush() -> None:
    ProfileFactory(pk=LEAKY_PK, username="next")
    assert Profile.cached.get(pk=LEAKY_PK).likes == 0
    write_behind.drain_model(Profile)
    assert Profile.objects.get(pk=LEAKY_PK).likes == 0


# A block object reused by every test (a decorator, a module-level atomic(savepoint=False)):
# what one test filled inside it is not believed in the next.
REUSED = transaction.atomic(savepoint=False)


@pytest.mark.keep_redis
class ReusedBlockTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.profile = ProfileFactory(age=30)

    def test_1_a_change_read_inside_the_block(self) -> None:
        with REUSED:
            Profile.objects.filter(pk=self.profile.pk).update(age=99)
            assert Profile.cached.get(pk=self.profile.pk).age == 99

    def test_2_is_gone_in_the_next_test(self) -> None:
        with REUSED:
            assert Profile.cached.get(pk=self.profile.pk).age == 30
