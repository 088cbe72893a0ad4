"""Many threads reading and writing the same rows: no errors, and the cache ends exact."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connections, transaction

from tests.factories import ProfileFactory
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapper(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_threads_reading_and_writing_leave_the_cache_exact():
    names = {p.pk: p.username for p in ProfileFactory.create_batch(10)}
    pks = list(names)
    deadline = time.monotonic() + 3

    def worker(index: int) -> None:
        rng = random.Random(index)
        while time.monotonic() < deadline:
            pk = rng.choice(pks)
            action = rng.random()
            if action < 0.15:
                with transaction.atomic():
                    profile = Profile.objects.select_for_update().get(pk=pk)
                    profile.age += 1
                    profile.save()
                    assert Profile.cached.get(pk=pk).age == profile.age  # own write
            elif action < 0.25:
                Profile.cached.get_many(rng.sample(pks, 4))
            elif action < 0.3:
                assert Profile.cached.get(username=names[pk]).pk == pk
            else:
                Profile.cached.get(pk=pk)

    assert run_threads(worker, 8) == []
    for pk in pks:
        assert Profile.cached.get(pk=pk).age == Profile.objects.get(pk=pk).age
    assert {pk: p.age for pk, p in Profile.cached.get_many(pks).items()} == dict(
        Profile.objects.values_list("pk", "age")
    )
